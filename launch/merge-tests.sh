#!/usr/bin/env bash
# MPI tests of `ligand merge` with the alignment, task-vector and least-squares methods on a tiny zoo (a few
# thousand images, [16]/[32] MLPs, one epoch, built into a temporary cache): every method gives a
# bitwise-identical fused file under mpirun -np 1, 2 and 4 (regmean and progressive on the tasks suite too; progressive after cca on the seeds suite), and bad input (one model, a reference out of
# range, a non-positive γ, models of different architectures, a method the suite cannot use, --align that
# is no alignment, a singular least-squares system without ridge, α outside [0, 1]) fails with one clear
# error and writes no fused file. Your own model files (three tiny MLPs from `ligand train`): `ligand run` over a
# models experiment gives bitwise-identical fused files for -np 1 and 2; a file of another architecture or with a NaN
# weight stops it with one message naming the file; `ligand merge --model-files` fuses them too. Experts of your own
# tasks (three open_clip towers imported, each with its own data set: --pretrained, --task-data): ties, regmean and
# neulig give bitwise-identical fused files for -np 1, 2 and 4.
#
#   bash launch/merge-tests.sh [BIN]      (default: LIGAND_BIN, else a release build)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT" || exit 1

source "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"
test_setup merge "${1:-}"
export LIGAND_ZOO_CACHE="$tmp/cache"
tiny_recipe "$tmp/tiny.yaml"

echo "--- build the tiny zoo"
if run_np 2 "$tmp/build.out" zoo build "$tmp/tiny.yaml" --quiet; then ok "zoo build ($(ls "$tmp"/cache/*/*.safetensors | wc -l) model files)"
else fail "zoo build"; sed 's/^/    | /' "$tmp/build.out" | tail -20; echo "merge tests: $passed passed, $failed failed"; exit 1; fi

echo "--- every method: the same fused file for -np 1, 2 and 4"
check_method() {   # check_method SUITE METHOD ARGS...
    local suite="$1" method="$2"; shift 2
    merge_on_ranks "$method" "$suite" "$method" "$method.safetensors" "fused: $method" "$@"
}
check_method tiny-seeds average
check_method tiny-seeds weight-matching
check_method tiny-seeds permute --reference best
check_method tiny-seeds cca --gammas 1e-3,1e-1,10
check_method tiny-tasks task-arithmetic --lambdas 0.3,0.6,1
check_method tiny-tasks ties --lambdas 0.5,1 --ties-k 20
check_method tiny-tasks dare --lambdas 0.5,1 --drop 0.3,0.6
check_method tiny-tasks tsv-m --scales 0.5,1
check_method tiny-tasks iso-c --scales 1,2
check_method tiny-tasks iso-cts --scales 1,2
check_method tiny-tasks wudi --scales 0.5,1 --wudi-steps 20 --wudi-lr 1e-3
check_method tiny-tasks fisher --fisher-samples 30 --calibration-samples 60
check_method tiny-tasks adamerging --adamerging-steps 20 --calibration-samples 60
# --tasks chooses the experts of every tasks-suite method (it used to be ignored outside neulig).
if run_np 2 "$tmp/tasks-subset.out" merge --method average --suite tiny-tasks --tasks invert,rotate90 --out "$tmp/tasks-subset" --quiet \
        && grep -q "tasks: T1 = invert, T2 = rotate90$" "$tmp/tasks-subset.out" && ! grep -q "T3 =" "$tmp/tasks-subset.out"; then
    ok "tasks-subset: --tasks invert,rotate90 fuses exactly those experts, in that order"
else fail "tasks-subset: --tasks was not honoured"; sed 's/^/    | /' "$tmp/tasks-subset.out" | tail; fi
sed 's/^/    | /' "$tmp/cca-2.out"

echo "--- least-squares fusion: the same fused file for -np 1, 2 and 4"
check_fusion() {   # check_fusion METHOD ARGS...
    local method="$1"; shift
    for np in 1 2 4; do
        run_np "$np" "$tmp/f-$method-$np.out" merge --method "$method" --suite tiny-tasks --out "$tmp/f-$method-$np" --quiet "$@" \
            || { fail "$method -np $np"; sed 's/^/    | /' "$tmp/f-$method-$np.out" | tail; return; }
    done
    local f1="$tmp/f-$method-1/$method.safetensors"
    if [[ -s "$f1" ]] && cmp -s "$f1" "$tmp/f-$method-2/$method.safetensors" && cmp -s "$f1" "$tmp/f-$method-4/$method.safetensors" \
            && diff <(grep -v '^report:' "$tmp/f-$method-1.out" | grep -v 'rank(s)') <(grep -v '^report:' "$tmp/f-$method-4.out" | grep -v 'rank(s)') >/dev/null; then
        ok "$method on tiny-tasks: bitwise-identical fused file and same table for -np 1, 2 and 4 ($(grep "fused: $method" "$tmp/f-$method-1.out" | tr -s ' '))"
    else fail "$method: -np 1, 2 and 4 differ"; diff "$tmp/f-$method-1.out" "$tmp/f-$method-4.out" | head; fi
}
check_fusion regmean --alphas 0.5,1 --ridges 1e-3,1e-1 --calibration-samples 200 --selection-samples 200 --lambdas 0.5,1
check_fusion progressive --ridges 1e-3,1e-1 --calibration-samples 200 --selection-samples 200 --lambdas 0.5,1
sed 's/^/    | /' "$tmp/f-progressive-2.out"
check_method tiny-seeds progressive --align cca --gammas 1e-1 --ridges 1e-3,1e-1 --calibration-samples 300 --selection-samples 200

echo "--- bad input: one clear error, no fused file"
merge_error() {   # merge_error NAME PATTERN NP ARGS...: `ligand merge ARGS` refused (test-lib.sh's expect_error)
    local name="$1" pattern="$2" np="$3"; shift 3
    expect_error "$name" "$pattern" "$np" merge --out "$tmp/bad-$name" --quiet "$@"
}
merge_error one-model "--models must be an integer ≥ 2, got 1" 2 --method cca --suite tiny-seeds --models 1
merge_error reference-range "--reference 7 is out of range: the merge has 3 models" 2 --method permute --suite tiny-seeds --reference 7
merge_error gamma-grid "--gammas: every γ must be finite and > 0" 2 --method cca --suite tiny-seeds --gammas 1e-3,0
# A recipe cannot hold two MLPs (model names use the kind): a copy of tiny-seeds with one file from tiny-tasks stands in.
mixed="$tmp/cache/tiny-mixed-0"
cp -r "$(ls -d "$tmp"/cache/tiny-seeds-*)" "$mixed"
sed -i 's/"suite" *: *"tiny-seeds"/"suite" : "tiny-mixed"/' "$mixed/manifest.json"
cp "$(ls "$tmp"/cache/tiny-tasks-*/mlp-pretrained.safetensors)" "$mixed/mlp-seed1.safetensors"
merge_error mixed-architectures "models of different architectures cannot be merged: mlp-seed1 is mlp 784-32-10 but mlp-seed0 is mlp 784-16-10" 2 --method permute --suite tiny-mixed
merge_error ties-on-seeds "needs a tasks suite" 2 --method ties --suite tiny-seeds
merge_error cca-on-tasks "use neulig, average, task-arithmetic, ties" 2 --method cca --suite tiny-tasks
merge_error align-not-alignment "--align: must be cca, permute or weight-matching" 2 --method progressive --suite tiny-seeds --align average
# Border pixels are black on every Fashion-MNIST image: without a ridge the first layer's Gram matrix is singular.
merge_error singular-no-ridge "layer 'layers.0': the 78[45]×78[45] Gram system is singular .*--ridges" 2 --method progressive --suite tiny-tasks --ridges 0 --calibration-samples 100
merge_error option-of-another-method "--gammas does not apply to --method average \\(it is an option of .*cca\\)" 2 --method average --suite tiny-seeds --gammas 1
merge_error unknown-task "has no mlp expert for task 'nope'" 2 --method ties --suite tiny-tasks --tasks invert,nope
merge_error tasks-on-seeds "--tasks applies to tasks suites" 2 --method cca --suite tiny-seeds --tasks invert
merge_error alpha-range "--alphas: every α must be in \[0, 1\]" 2 --method regmean --suite tiny-tasks --alphas 0.5,2

echo "--- your own model files: ligand run over a models experiment, ligand merge --model-files"
mf="$tmp/files"; mkdir -p "$mf"
for s in 0 1 2; do
    "$bin" train --hidden 16 --train-images 2000 --eval-images 500 --epochs 1 --seed "$s" --out "$mf/m$s.safetensors" --quiet >"$mf/train-$s.out" 2>&1 \
        || { fail "ligand train --seed $s"; sed 's/^/    | /' "$mf/train-$s.out" | tail -5; }
done
"$bin" train --hidden 32 --train-images 2000 --eval-images 500 --epochs 1 --seed 5 --out "$mf/wide.safetensors" --quiet >"$mf/train-wide.out" 2>&1 \
    || fail "ligand train (wide)"
models_recipe() {   # models_recipe FILE THIRD-MODEL: a zoo-less recipe over m0, m1 and the third file
    cat >"$1" <<YAML
experiments:
  - name: my-mlps
    models: [$mf/m0.safetensors, $mf/m1.safetensors, $mf/$2]
    calibration: 1000
    k: [2, 3]
    methods: [average, permute, {method: cca, gammas: [0.01, 1], calibration_samples: 500}, {method: neulig, epochs: 2, calibration_samples: 300}]
YAML
}
models_recipe "$mf/run.yaml" m2.safetensors
for np in 1 2; do
    run_np "$np" "$mf/run-$np.out" run "$mf/run.yaml" --out "$mf/out-$np" --quiet || { fail "ligand run (models) -np $np"; sed 's/^/    | /' "$mf/run-$np.out" | tail; }
done
fused=("$mf"/out-1/runs/*/*.safetensors)
same=1
for f in "${fused[@]}"; do cmp -s "$f" "$mf/out-2/${f#"$mf/out-1/"}" || { same=0; echo "    differs: ${f#"$mf/out-1/"}"; }; done
if (( ${#fused[@]} == 8 )) && [[ -s "$mf/out-1/report.json" && -s "$mf/out-2/report.json" && -s "$mf/out-2/report.md" ]] && (( same )) \
        && grep -q '"suiteKind" : "models"' "$mf/out-2/report.json" && grep -q "## my-mlps (models)" "$mf/out-2/report.md" \
        && [[ -d "$mf/out-1/runs/my-mlps-cca-k3-0_1_2-seed0" ]]; then
    ok "ligand run over 3 model files: ${#fused[@]} bitwise-identical fused files for -np 1 and 2, report.json ($(grep '^| cca | 3' "$mf/out-2/report.md"))"
else fail "ligand run over model files: ${#fused[@]} fused file(s), identical: $same"; sed 's/^/    | /' "$mf/run-2.out" | tail; fi
# The record keeps every candidate's calibration score beside the choice: cca weighed both γ.
rec="$mf/out-2/runs/my-mlps-cca-k3-0_1_2-seed0/record.json"
if grep -q '"gamma=1e-2"' "$rec" && grep -q '"gamma=1e0"' "$rec"; then ok "record.json: cca's calibration scores for both γ beside the chosen one"
else fail "record.json: no calibration score per γ in $rec"; fi
# Resume: a rerun reuses every finished run's record (same report); a model file changed reruns only the runs that use it.
cp "$mf/out-2/report.json" "$mf/first-report.json"
run_np 2 "$mf/rerun.out" run "$mf/run.yaml" --out "$mf/out-2" || fail "ligand run (models) rerun"
reused=$(grep -c 'done before: ' "$mf/rerun.out")
if (( reused == 8 )) && cmp -s "$mf/first-report.json" "$mf/out-2/report.json"; then
    ok "ligand run again: all 8 runs reused from their records, report.json unchanged"
else fail "ligand run again: $reused of 8 runs reused, report unchanged: $(cmp -s "$mf/first-report.json" "$mf/out-2/report.json" && echo yes || echo no)"; tail -5 "$mf/rerun.out" | sed 's/^/    | /'; fi
touch "$mf/m2.safetensors"
run_np 2 "$mf/rerun2.out" run "$mf/run.yaml" --out "$mf/out-2" || fail "ligand run (models) after touching m2"
reused=$(grep -c 'done before: ' "$mf/rerun2.out"); stale=$(grep -c 'recorded for other models, settings or ranks; running again' "$mf/rerun2.out")
if (( reused == 4 && stale == 4 )); then
    ok "ligand run after m2.safetensors changed: the 4 K = 2 runs (m0, m1) reused, the 4 K = 3 runs run again"
else fail "ligand run after m2 changed: $reused reused, $stale run again (want 4 and 4)"; fi
# A file of another architecture: refused when the recipe is read, naming the file; nothing runs.
models_recipe "$mf/bad.yaml" wide.safetensors
run_np 2 "$mf/bad.out" run "$mf/bad.yaml" --out "$mf/bad-out" --quiet
rc=$?
if (( rc != 0 )) && grep -q "experiments\[0\].models\[2\]: '$mf/wide.safetensors' holds a mlp 784-32-10, but models\[0\]" "$mf/bad.out" \
        && (( $(rank_output "$mf/bad.out" | grep -ci "error: ") == 1 )) && [[ ! -e "$mf/bad-out" ]]; then
    ok "ligand run, a file of another architecture: exit $rc: $(grep -im1 'error: ' "$mf/bad.out")"
else fail "ligand run, a file of another architecture: exit $rc"; sed 's/^/    | /' "$mf/bad.out" | head; fi
# NaN weights: found before any run, naming the file and the tensor.
python3 - "$mf/m2.safetensors" "$mf/nan.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
o = 8 + n + h["layers.0.weight"]["data_offsets"][0]
b[o:o + 4] = struct.pack("<f", float("nan"))
open(sys.argv[2], "wb").write(b)
PY
models_recipe "$mf/nan.yaml" nan.safetensors
# The flipped bytes fail the file's checksum first; --no-verify lets the NaN check itself speak.
run_np 2 "$mf/nan.out" run "$mf/nan.yaml" --out "$mf/nan-out" --quiet --no-verify
rc=$?
if (( rc != 0 )) && grep -q "$mf/nan.safetensors: tensor \"layers.0.weight\": element 0 is nan" "$mf/nan.out" && [[ ! -e "$mf/nan-out" ]]; then
    ok "ligand run, NaN weights: exit $rc: $(grep -im1 'error: ' "$mf/nan.out")"
else fail "ligand run, NaN weights: exit $rc"; sed 's/^/    | /' "$mf/nan.out" | head; fi
# ligand merge over the same files: the fused tensors of the recipe's K = 3 run; a mismatch fails at run time.
run_np 2 "$mf/merge.out" merge --method cca --model-files "$mf/m0.safetensors,$mf/m1.safetensors,$mf/m2.safetensors" --calibration-holdout 1000 \
    --gammas 0.01,1 --calibration-samples 500 --out "$mf/merge" --quiet
# The files' metadata differ in the label (model-files, my-mlps): compare the tensors' SHA-256s.
tensors() { "$bin" safetensors-tool dump "$1" | grep sha256; }
if [[ -s "$mf/merge/cca.safetensors" ]] && grep -q "fused: cca" "$mf/merge.out" \
        && diff <(tensors "$mf/merge/cca.safetensors") <(tensors "$mf/out-1/runs/my-mlps-cca-k3-0_1_2-seed0/cca.safetensors") >/dev/null; then
    ok "ligand merge --model-files: the tensors of ligand run's K = 3 cca file ($(grep 'fused: cca' "$mf/merge.out" | tr -s ' '))"
else fail "ligand merge --model-files"; sed 's/^/    | /' "$mf/merge.out" | tail; fi
merge_error files-architectures "$mf/wide.safetensors: holds a mlp 784-32-10, but $mf/m0.safetensors holds a mlp 784-16-10" 2 \
    --method permute --model-files "$mf/m0.safetensors,$mf/wide.safetensors"
merge_error files-and-suite "--suite and --model-files are alternatives" 1 --method average --suite tiny-seeds --model-files "$mf/m0.safetensors,$mf/m1.safetensors"
merge_error files-ties "model files are merged as diverse-origin models of one task" 2 --method ties --model-files "$mf/m0.safetensors,$mf/m1.safetensors"

echo "--- your own experts (open_clip towers, --pretrained, --task-data): the same fused file for -np 1, 2 and 4"
byo="$tmp/byo"; mkdir -p "$byo"
PYTHONPATH=Tests/python python3 - "$byo" <<'PY' || fail "writing the CLIP experts and their data sets"
import pathlib, sys
import numpy as np
from safetensors.numpy import save_file
from test_clip_import import clip_tower, task_data
root, rng = pathlib.Path(sys.argv[1]), np.random.default_rng(5)
pre = clip_tower(rng)
save_file(pre, str(root / "src-pretrained.safetensors"))
for name, classes in [("a", 10), ("b", 4), ("c", 6)]:
    t = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32) if ".visual." in k else v for k, v in pre.items()}
    t["classification_head.weight"] = (10 * rng.standard_normal((classes, 16))).astype(np.float32)
    t["classification_head.bias"] = np.zeros(classes, np.float32)
    save_file(t, str(root / f"src-{name}.safetensors"))
    task_data(root / f"data-{name}", rng, classes)
PY
for n in pretrained a b c; do "$bin" import "$byo/src-$n.safetensors" --out "$byo/$n.safetensors" --heads 2 >/dev/null || fail "ligand import (CLIP $n)"; done
for method in ties regmean neulig; do
    file="$method.safetensors" extra=()
    [[ "$method" == neulig ]] && { file=neulig-global.safetensors; extra=(--epochs 2); }
    for np in 1 2 4; do
        run_np "$np" "$byo/$method-$np.out" merge --method "$method" --model-files "$byo/a.safetensors,$byo/b.safetensors,$byo/c.safetensors" \
            --pretrained "$byo/pretrained.safetensors" --task-data "$byo/data-a,$byo/data-b,$byo/data-c" --calibration-holdout 100 --out "$byo/$method-$np" --quiet "${extra[@]}" \
            || { fail "$method on your own experts, -np $np"; sed 's/^/    | /' "$byo/$method-$np.out" | tail; }
    done
    if cmp -s "$byo/$method-1/$file" "$byo/$method-2/$file" && cmp -s "$byo/$method-1/$file" "$byo/$method-4/$file" \
            && grep -Eq "tasks: T1 = a, T2 = b, T3 = c|T1 = a" "$byo/$method-4.out"; then
        ok "$method on three open_clip experts with their own data sets: bitwise-identical fused file for -np 1, 2 and 4 ($(grep -E "fused: $method|global mode" "$byo/$method-1.out" | tr -s ' '))"
    else fail "$method on your own experts: -np 1, 2 and 4 differ"; sed 's/^/    | /' "$byo/$method-4.out" | tail -5; fi
done

echo "merge tests: $passed passed, $failed failed"
(( failed == 0 ))
