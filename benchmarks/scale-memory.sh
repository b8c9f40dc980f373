#!/usr/bin/env bash
# Peak resident memory per rank of one merge in a fresh process, K = 8 … 64 of the 64-model seeds suite, on 1 and 4
# ranks (docs/scale.md "Memory per rank"): every rank runs under /usr/bin/time, whose maximum RSS is the process's own.
#   bash benchmarks/scale-memory.sh [OUT_DIR]        (the suite of recipes/seeds-64.yaml must be built)
# Prints one Markdown row per method, K and rank count: the largest and smallest peak over the ranks, in MB.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../launch/common.sh"
cd "$LIGAND_ROOT"
bin="${LIGAND_BIN:-$LIGAND_ROOT/.build/release/ligand}"
out="${1:-$(mktemp -d /tmp/ligand-scale-memory.XXXXXX)}"
mkdir -p "$out"
echo "| method | K | ranks | peak RSS MB, largest rank | smallest rank | wall s |"
echo "|---|---:|---:|---:|---:|---:|"
for method in average permute cca; do
    # As recipes/run-scale.yaml, with one γ for CCA: the grid repeats the same work, it holds no more memory.
    extra=(); [[ $method == cca ]] && extra=(--calibration-samples 2000 --gammas 1e-2)
    for k in 8 16 32 64; do
        for np in 1 4; do
            dir="$out/$method-k$k-np$np"; rm -rf "$dir"; mkdir -p "$dir"
            start=$(date +%s.%N)
            ligand_mpirun -np "$np" -- bash -c "exec /usr/bin/time -f %M -o $dir/rss-\$OMPI_COMM_WORLD_RANK $bin merge --method $method \
                --suite seeds-mlp-64 --models $k ${extra[*]} --out $dir/fused --quiet" >"$dir/log" 2>&1 \
                || { echo "failed: $method K=$k -np $np (see $dir/log)" >&2; exit 1; }
            wall=$(echo "$(date +%s.%N) - $start" | bc)
            read -r hi lo < <(cat "$dir"/rss-* | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print hi, lo }')
            printf "| %s | %d | %d | %.0f | %.0f | %.1f |\n" "$method" "$k" "$np" "$(echo "$hi * 1.024 / 1000" | bc -l)" "$(echo "$lo * 1.024 / 1000" | bc -l)" "$wall"
        done
    done
done
