#!/usr/bin/env bash
# MPI tests of `ligand merge` with the alignment, task-vector and least-squares methods on a tiny zoo (a few
# thousand images, [16]/[32] MLPs, one epoch, built into a temporary cache): every method gives a
# bitwise-identical fused file under mpirun -np 1, 2 and 4 (regmean and progressive on the tasks suite too; progressive after cca on the seeds suite), and bad input (one model, a reference out of
# range, a non-positive γ, models of different architectures, a method the suite cannot use, --align that
# is no alignment, a singular least-squares system without ridge, α outside [0, 1]) fails with one clear
# error and writes no fused file.
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
    for np in 1 2 4; do
        run_np "$np" "$tmp/$method-$np.out" merge --method "$method" --suite "$suite" --out "$tmp/$method-$np" --quiet "$@" \
            || { fail "$method -np $np"; sed 's/^/    | /' "$tmp/$method-$np.out" | tail; return; }
    done
    local f1="$tmp/$method-1/$method.safetensors"
    table() { grep -v '^report:' "$1" | grep -v 'rank(s)'; }
    if [[ -s "$f1" ]] && cmp -s "$f1" "$tmp/$method-2/$method.safetensors" && cmp -s "$f1" "$tmp/$method-4/$method.safetensors" \
            && grep -q "fused: $method" "$tmp/$method-1.out" \
            && diff <(table "$tmp/$method-1.out") <(table "$tmp/$method-2.out") >/dev/null \
            && diff <(table "$tmp/$method-1.out") <(table "$tmp/$method-4.out") >/dev/null; then
        ok "$method on $suite: bitwise-identical fused file and same table for -np 1, 2 and 4 ($(grep "fused: $method" "$tmp/$method-1.out" | tr -s ' '))"
    else fail "$method: -np 1, 2 and 4 differ"; diff "$tmp/$method-1.out" "$tmp/$method-4.out" | head; fi
}
check_method tiny-seeds average
check_method tiny-seeds weight-matching
check_method tiny-seeds permute --reference best
check_method tiny-seeds cca --gammas 1e-3,1e-1,10
check_method tiny-tasks task-arithmetic --lambdas 0.3,0.6,1
check_method tiny-tasks ties --lambdas 0.5,1 --ties-k 20
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
check_fusion progressive --alphas 1 --ridges 1e-3,1e-1 --calibration-samples 200 --selection-samples 200 --lambdas 0.5,1
sed 's/^/    | /' "$tmp/f-progressive-2.out"
check_method tiny-seeds progressive --align cca --gammas 1e-1 --ridges 1e-3,1e-1 --calibration-samples 300 --selection-samples 200

echo "--- bad input: one clear error, no fused file"
expect_error() {   # expect_error NAME PATTERN NP ARGS...
    local name="$1" pattern="$2" np="$3"; shift 3
    run_np "$np" "$tmp/$name.out" merge --out "$tmp/bad-$name" --quiet "$@"
    local rc=$?
    local n
    n=$(grep -ci "error: " "$tmp/$name.out")
    if (( rc != 0 )) && grep -qE -- "$pattern" "$tmp/$name.out" && (( n == 1 )) && [[ ! -e "$tmp/bad-$name" ]]; then
        ok "$name: exit $rc: $(grep -im1 'error: ' "$tmp/$name.out")"
    else fail "$name: exit $rc, $n error line(s)"; sed 's/^/    | /' "$tmp/$name.out" | head; fi
}
expect_error one-model "--models must be at least 2" 2 --method cca --suite tiny-seeds --models 1
expect_error reference-range "--reference 7 is out of range: the merge has 3 models" 2 --method permute --suite tiny-seeds --reference 7
expect_error gamma-grid "--gammas: every γ must be finite and > 0" 2 --method cca --suite tiny-seeds --gammas 1e-3,0
# A recipe cannot hold two MLPs (model names use the kind): a copy of tiny-seeds with one file from tiny-tasks stands in.
mixed="$tmp/cache/tiny-mixed-0"
cp -r "$(ls -d "$tmp"/cache/tiny-seeds-*)" "$mixed"
sed -i 's/"suite" *: *"tiny-seeds"/"suite" : "tiny-mixed"/' "$mixed/manifest.json"
cp "$(ls "$tmp"/cache/tiny-tasks-*/mlp-pretrained.safetensors)" "$mixed/mlp-seed1.safetensors"
expect_error mixed-architectures "models of different architectures cannot be merged: mlp-seed1 is mlp 784-32-10 but mlp-seed0 is mlp 784-16-10" 2 --method permute --suite tiny-mixed
expect_error ties-on-seeds "needs a tasks suite" 2 --method ties --suite tiny-seeds
expect_error cca-on-tasks "use average, task-arithmetic or ties" 2 --method cca --suite tiny-tasks
expect_error align-not-alignment "--align must be cca, permute or weight-matching" 2 --method progressive --suite tiny-seeds --align average
# Border pixels are black on every Fashion-MNIST image: without a ridge the first layer's Gram matrix is singular.
expect_error singular-no-ridge "layer 'layers.0': the 78[45]×78[45] Gram system is singular .*--ridges" 2 --method progressive --suite tiny-tasks --ridges 0 --calibration-samples 100
expect_error alpha-range "--alphas: every α must be in \[0, 1\]" 2 --method regmean --suite tiny-tasks --alphas 0.5,2

echo "merge tests: $passed passed, $failed failed"
(( failed == 0 ))
