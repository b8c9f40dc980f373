#!/usr/bin/env bash
# Wall time of `ligand run RECIPE` for two builds, interleaved (A, B, A, B, ...) so a shared machine's drift hits
# both alike; prints every time, each build's median and the ratio A/B. The zoo must be cached already (the first
# run would otherwise build it); the runs write under a temporary directory, removed on exit.
#   bash launch/bench-run.sh OLD_BIN NEW_BIN [RECIPE] [PAIRS] [NP]
#   (defaults: recipes/run-demo.yaml, 3 pairs, -np 2; e.g. OLD_BIN from `git worktree add /tmp/old 91bca90`
#   and a release build there)
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/common.sh
[[ $# -ge 2 ]] || { echo "usage: bash launch/bench-run.sh OLD_BIN NEW_BIN [RECIPE] [PAIRS] [NP]" >&2; exit 2; }
old="$1" new="$2" recipe="${3:-recipes/run-demo.yaml}" pairs="${4:-3}" np="${5:-2}"
for b in "$old" "$new"; do [[ -x "$b" ]] || { echo "bench-run: $b is not an executable" >&2; exit 2; }; done
[[ -f "$recipe" ]] || { echo "bench-run: no recipe $recipe" >&2; exit 2; }
[[ "$pairs" =~ ^[1-9][0-9]?$ ]] || { echo "bench-run: PAIRS must be 1..99, got $pairs" >&2; exit 2; }
[[ "$np" =~ ^[1-9][0-9]?$ ]] || { echo "bench-run: NP must be 1..99, got $np" >&2; exit 2; }
ligand_pin_blas_kernel
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
declare -A times=([old]="" [new]="")
for i in $(seq 1 "$pairs"); do
    for v in old new; do
        bin=$old; [[ $v == new ]] && bin=$new
        start=$(date +%s.%N)
        ligand_mpirun -np "$np" -- "$bin" run "$recipe" --out "$tmp/$v-$i" --quiet >"$tmp/$v-$i.log" 2>&1 \
            || { echo "bench-run: $v run $i failed:" >&2; tail -5 "$tmp/$v-$i.log" >&2; exit 1; }
        t=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$(date +%s.%N)")
        echo "$v $i: $t s"
        times[$v]+="$t "
    done
done
python3 - "${times[old]}" "${times[new]}" <<'EOF'
import statistics, sys
old, new = (statistics.median(map(float, s.split())) for s in sys.argv[1:3])
print(f"median: old {old:.2f} s, new {new:.2f} s, old/new {old / new:.2f}x")
EOF
