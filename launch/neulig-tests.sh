#!/usr/bin/env bash
# MPI tests of `ligand merge --method neulig` on a tiny tasks suite: the fused file is bitwise
# identical for -np 1, 2, 3 and 4 (a rank without experts); a rank killed midway ends the job non-zero within seconds with no
# fused file, and a rerun resumes from the last checkpoint and ends with the same file as an
# undisturbed run; on a tiny seeds suite NeuLig alone and `--align cca` then NeuLig give the same
# file for -np 1 and 2; bad input gives one clear error and writes nothing.
#
#   bash launch/neulig-tests.sh [BIN]      (default: LIGAND_BIN, else a release build)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT" || exit 1

source "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"
test_setup neulig "${1:-}"
export LIGAND_ZOO_CACHE="$tmp/cache"
tiny_recipe "$tmp/tiny.yaml"

merge_args=(merge --method neulig --suite tiny-tasks --loss sup --epochs 60 --calibration-samples 300 --quiet)

run_np 2 "$tmp/build.out" zoo build "$tmp/tiny.yaml" --quiet || { fail "zoo build"; tail "$tmp/build.out"; echo "neulig tests: $passed passed, $((failed)) failed"; exit 1; }

echo "--- fused file for -np 1, 2, 3, and 4 (more ranks than the 3 experts: one rank holds none)"
for np in 1 2 3 4; do
    if run_np "$np" "$tmp/m$np.out" "${merge_args[@]}" --out "$tmp/out$np"; then ok "merge neulig -np $np"
    else fail "merge neulig -np $np"; tail "$tmp/m$np.out" | sed 's/^/    | /'; fi
done
for np in 2 3 4; do
    if cmp -s "$tmp/out1/neulig-global.safetensors" "$tmp/out$np/neulig-global.safetensors"; then ok "-np 1 and -np $np fused files are bitwise identical"
    else fail "-np 1 and -np $np fused files differ"; fi
done
grep -q "NeuLig fused, task mode" "$tmp/m1.out" && grep -q "Portland ensemble" "$tmp/m1.out" && grep -q "^TIES" "$tmp/m1.out" \
    && ok "the report table names the modes, the ensembles and the TIES baseline" || fail "report table incomplete"
if grep -q '"bytesCommunicated" : [1-9]' "$tmp/out2/report.json" && grep -q "bytes over the run" "$tmp/m2.out"; then
    ok "-np 2 report: $(grep -m1 -o '"bytesCommunicated" : [0-9]*' "$tmp/out2/report.json") and per-phase seconds in the footer"
else fail "-np 2 report lacks bytesCommunicated"; fi

echo "--- seeds suite: NeuLig alone and CCA then NeuLig, -np 1 vs 2"
for variant in alone cca; do
    extra=(); [[ $variant == cca ]] && extra=(--align cca --gammas 1e-3,1e-1,10)
    for np in 1 2; do
        run_np "$np" "$tmp/s-$variant-$np.out" merge --method neulig --suite tiny-seeds --loss sup --epochs 20 --quiet "${extra[@]}" --out "$tmp/s-$variant-$np" \
            || { fail "seeds $variant -np $np"; tail "$tmp/s-$variant-$np.out" | sed 's/^/    | /'; }
    done
    f1="$tmp/s-$variant-1/neulig-global.safetensors"
    row=$([[ $variant == cca ]] && echo "cca then NeuLig" || echo "NeuLig alone")
    if [[ -s "$f1" ]] && cmp -s "$f1" "$tmp/s-$variant-2/neulig-global.safetensors" && grep -q "$row" "$tmp/s-$variant-1.out" \
            && diff <(grep -vE '^(report:|wall seconds|communication)' "$tmp/s-$variant-1.out" | grep -v 'rank(s)') \
                    <(grep -vE '^(report:|wall seconds|communication)' "$tmp/s-$variant-2.out" | grep -v 'rank(s)') >/dev/null; then
        ok "seeds, $row: bitwise-identical fused file and table for -np 1 and 2 ($(grep "$row" "$tmp/s-$variant-1.out" | tr -s ' '))"
    else fail "seeds $variant: -np 1 and -np 2 differ"; diff "$tmp/s-$variant-1.out" "$tmp/s-$variant-2.out" | head; fi
done
grep -q "cca alone" "$tmp/s-cca-1.out" && grep -q "ensemble (mean softmax)" "$tmp/s-cca-1.out" && ok "the --align cca table shows CCA alone beside the ensemble" \
    || fail "--align cca table incomplete"

echo "--- a killed rank, then a resume"
long=(merge --method neulig --suite tiny-tasks --loss sup --epochs 1000 --calibration-samples 300 --checkpoint-every 50 --quiet --no-baselines)
run_np 2 "$tmp/full.out" "${long[@]}" --out "$tmp/full" || fail "undisturbed long run"
(run_np 2 "$tmp/killed.out" "${long[@]}" --out "$tmp/killed"; echo $? >"$tmp/killed.rc") &
for _ in $(seq 1 600); do ls "$tmp"/killed/checkpoints/*.safetensors >/dev/null 2>&1 && break; sleep 0.1; done
# A rank, found by the binary's own path (mpirun's command line holds the same arguments after `-- $bin`).
bin_re=$(printf '%s' "$bin" | sed 's/[][\.*^$+?(){}|]/\\&/g')
victim=$(pgrep -f "^$bin_re merge --method neulig --suite tiny-tasks.*--out $tmp/killed" | tail -1)
start=$(date +%s)
if [[ -n "$victim" ]]; then kill -9 "$victim"; fi
wait
elapsed=$(( $(date +%s) - start ))
rc=$(cat "$tmp/killed.rc" 2>/dev/null || echo 0)
if [[ -n "$victim" ]] && (( rc != 0 && elapsed <= 30 )) && [[ ! -e "$tmp/killed/neulig-global.safetensors" ]]; then
    ok "killing rank pid $victim: exit $rc after ${elapsed}s, no fused file"
else fail "killed run: victim '$victim', exit $rc after ${elapsed}s, fused file $(ls "$tmp/killed" 2>/dev/null | tr '\n' ' ')"; fi
ls "$tmp"/killed/checkpoints/*.safetensors >/dev/null 2>&1 && ok "checkpoints survived the kill" || fail "no checkpoint after the kill"
if run_np 2 "$tmp/resumed.out" "${long[@]}" --out "$tmp/killed" && grep -q "resumed Portland from the checkpoint at epoch" "$tmp/resumed.out"; then
    ok "rerun: $(grep -m1 -o 'resumed Portland from the checkpoint at epoch [0-9]*' "$tmp/resumed.out")"
else fail "rerun did not resume"; tail "$tmp/resumed.out" | sed 's/^/    | /'; fi
cmp -s "$tmp/full/neulig-global.safetensors" "$tmp/killed/neulig-global.safetensors" && ok "the resumed run's fused file equals the undisturbed run's" \
    || fail "resumed fused file differs from the undisturbed run's"

echo "--- bad input"
neulig_error() {   # neulig_error NAME PATTERN ARGS...: ARGS under 2 ranks refused (test-lib.sh's expect_error)
    local name="$1" pattern="$2"; shift 2
    expect_error "$name" "$pattern" 2 "$@" --out "$tmp/bad-$name"
}
neulig_error lr-zero "--lr: must be positive" merge --method neulig --suite tiny-tasks --lr 0
neulig_error empty-calibration "--calibration-samples: must be at least 2" merge --method neulig --suite tiny-tasks --calibration-samples 0
neulig_error align-on-tasks "share one pretrained origin" merge --method neulig --suite tiny-tasks --align cca
neulig_error align-method "--align: must be cca, permute or weight-matching" merge --method neulig --suite tiny-seeds --align average
# Suites made from copies of tiny-tasks: one expert of another width, one expert file without its head.
copy_suite() {   # copy_suite NAME: a copy of tiny-tasks named NAME; prints its directory
    local dir="$tmp/cache/$1-0"
    cp -r "$(ls -d "$tmp"/cache/tiny-tasks-*)" "$dir"
    sed -i "s/\"suite\" *: *\"tiny-tasks\"/\"suite\" : \"$1\"/" "$dir/manifest.json"
    echo "$dir"
}
wide=$(copy_suite tiny-wide)
cp "$(ls "$tmp"/cache/tiny-seeds-*/mlp-seed0.safetensors)" "$wide/mlp-invert.safetensors"
neulig_error feature-widths "different feature widths" merge --method neulig --suite tiny-wide
headless=$(copy_suite tiny-headless)
python3 - "$headless/mlp-invert.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
raw = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
head = "head.weight"
old, new = ('"%s"' % head).encode(), ('"%s"' % head.replace(".weight", ".wzight")).encode()   # same length: offsets stay valid
i = raw.index(old, 8, 8 + n)
raw[i:i + len(old)] = new
open(path, "wb").write(raw)
PY
neulig_error no-head "mlp-invert.safetensors.*head" merge --method neulig --suite tiny-headless
neulig_error unknown-task "no mlp expert for task 'nope'" merge --method neulig --suite tiny-tasks --tasks rotate90,nope
neulig_error one-task "at least two experts" merge --method neulig --suite tiny-tasks --tasks rotate90

echo "neulig tests: $passed passed, $failed failed"
(( failed == 0 ))
