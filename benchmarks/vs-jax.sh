#!/usr/bin/env bash
# Throughput, Ligand against the same networks in JAX (benchmarks/jax_bench.py), measured back to back on the same
# cores: for each architecture, mode (train, forward) and thread count, ROUNDS alternating runs of
# `ligand bench train|forward` and of the JAX step, each pinned with taskset to that many cores; prints one
# markdown row per configuration with the medians and their ratio. Not part of the tests.
#
#   bash benchmarks/vs-jax.sh [BIN] [ROUNDS] [STEPS] [ARCHS] [MODES] [THREADS]
#     defaults: .build/release/ligand 5 20 "mlp resnet20 vit" "train forward" "1 2"; batch 128
#     PYTHON: a Python with jax (default python3):
#       python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax; PYTHON=/tmp/jaxenv/bin/python
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${1:-.build/release/ligand}" rounds="${2:-5}" steps="${3:-20}" archs="${4:-mlp resnet20 vit}" modes="${5:-train forward}"
threads="${6:-1 2}" py="${PYTHON:-python3}"
"$py" -c "import jax" 2>/dev/null || { echo "no jax in $py: python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax; PYTHON=/tmp/jaxenv/bin/python" >&2; exit 1; }
[ -x "$bin" ] || { echo "no ligand binary at $bin (swift build -c release)" >&2; exit 1; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
echo "| architecture | mode | threads | Ligand img/s (median of $rounds) | JAX img/s (median of $rounds) | ratio |"
echo "|---|---|---|---|---|---|"
for a in $archs; do for m in $modes; do for t in $threads; do
    cores=$(seq -s, 0 $((t - 1)))
    if [ "$m" = train ]; then args=(bench train --archs "$a"); key="train $a"
    else args=(bench forward --archs "$a" --batch-sizes 128); key="forward $a batch 128"; fi
    : >"$tmp/l"; : >"$tmp/j"
    for r in $(seq 1 "$rounds"); do
        OPENBLAS_NUM_THREADS=$t taskset -c "$cores" "$bin" "${args[@]}" --threads "$t" --steps "$steps" --json "$tmp/l.json" >/dev/null
        "$py" -c "import json,sys; print(next(r['value'] for r in json.load(open(sys.argv[1]))['results'] if r['benchmark'] == sys.argv[2]))" "$tmp/l.json" "$key" >>"$tmp/l"
        taskset -c "$cores" "$py" benchmarks/jax_bench.py --arch "$a" --mode "$m" --steps "$steps" >>"$tmp/j"
    done
    "$py" - "$a" "$m" "$t" "$tmp/l" "$tmp/j" <<'PY'
import statistics, sys
a, m, t = sys.argv[1:4]
l, j = [float(x) for x in open(sys.argv[4])], [float(x) for x in open(sys.argv[5])]
ml, mj = statistics.median(l), statistics.median(j)
print(f"| {a} | {m} | {t} | {ml:,.0f} ({', '.join(f'{x:,.0f}' for x in l)}) | {mj:,.0f} ({', '.join(f'{x:,.0f}' for x in j)}) | {ml / mj:.2f}× |")
PY
done; done; done
