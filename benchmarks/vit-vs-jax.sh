#!/usr/bin/env bash
# ViT training throughput, Ligand against the same network in JAX (benchmarks/vit_train_jax.py), measured back to
# back on the same cores: for each thread count, ROUNDS alternating runs of `ligand bench train --archs vit` and of
# the JAX step (pinned with taskset to that many cores), then the medians and their ratio. Not part of the tests.
#
#   bash benchmarks/vit-vs-jax.sh [BIN] [ROUNDS] [STEPS]     (PYTHON: a Python with jax; default python3)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${1:-.build/release/ligand}" rounds="${2:-5}" steps="${3:-20}" py="${PYTHON:-python3}"
"$py" -c "import jax" 2>/dev/null || { echo "no jax in $py: python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax; PYTHON=/tmp/jaxenv/bin/python"; exit 1; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for t in 1 2; do
    cores=$(seq -s, 0 $((t - 1)))
    for r in $(seq 1 "$rounds"); do
        OPENBLAS_NUM_THREADS=$t taskset -c "$cores" "$bin" bench train --archs vit --threads "$t" --steps "$steps" --json "$tmp/l.json" >/dev/null
        "$py" -c "import json,sys; print(next(r['value'] for r in json.load(open(sys.argv[1]))['results'] if r['benchmark'] == 'train vit'))" "$tmp/l.json" >>"$tmp/ligand-$t"
        taskset -c "$cores" "$py" benchmarks/vit_train_jax.py --steps "$steps" >>"$tmp/jax-$t"
    done
    "$py" - "$t" "$tmp/ligand-$t" "$tmp/jax-$t" <<'PY'
import statistics, sys
t, l, j = sys.argv[1], [float(x) for x in open(sys.argv[2])], [float(x) for x in open(sys.argv[3])]
ml, mj = statistics.median(l), statistics.median(j)
print(f"{t} thread(s): ligand median {ml:.0f} img/s (runs {', '.join(f'{x:.0f}' for x in l)}), "
      f"jax median {mj:.0f} img/s (runs {', '.join(f'{x:.0f}' for x in j)}), ratio {ml / mj:.2f}x")
PY
done
