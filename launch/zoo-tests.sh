#!/usr/bin/env bash
# MPI tests of the model zoo and of `ligand eval` on a tiny recipe (a few thousand images, [16]
# and [32] MLPs, one epoch): a build under mpirun -np 1, 2 and 4 gives bitwise-identical files;
# an unchanged recipe is not rebuilt; a build cut short (no manifest, a truncated model) resumes
# and ends identical; `ligand eval` prints the same table for -np 1, 2 and 4; bad input (unknown
# key, bad value, mixed architectures, missing data) gives one clear error and leaves the cache alone.
#
#   bash launch/zoo-tests.sh [BIN]      (default: LIGAND_BIN, else a release build)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT" || exit 1

source "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"
test_setup zoo "${1:-}"
tiny_recipe "$tmp/tiny.yaml"

echo "--- build with -np 1, 2, 4"
for np in 1 2 4; do
    if run_np "$np" "$tmp/build$np.out" zoo build "$tmp/tiny.yaml" --cache "$tmp/c$np" --quiet; then
        ok "zoo build -np $np ($(ls "$tmp"/c$np/*/*.safetensors | wc -l) model files)"
    else
        fail "zoo build -np $np"; sed 's/^/    | /' "$tmp/build$np.out" | tail -20
    fi
done
for np in 2 4; do
    if diff -r "$tmp/c1" "$tmp/c$np" >/dev/null; then ok "-np 1 and -np $np built bitwise-identical files and manifests"
    else fail "-np 1 and -np $np differ: $(diff -rq "$tmp/c1" "$tmp/c$np" | head -3 | tr '\n' ' ')"; fi
done

echo "--- an unchanged recipe is not rebuilt"
before="$(find "$tmp/c1" -type f -printf '%p %T@\n' | sort)"
run_np 2 "$tmp/again.out" zoo build "$tmp/tiny.yaml" --cache "$tmp/c1"
after="$(find "$tmp/c1" -type f -printf '%p %T@\n' | sort)"
if grep -q "tiny-seeds: up to date" "$tmp/again.out" && grep -q "tiny-tasks: up to date" "$tmp/again.out" && [[ "$before" == "$after" ]]; then
    ok "second build: up to date, no file touched"
else fail "second build rebuilt something"; sed 's/^/    | /' "$tmp/again.out" | tail; fi

echo "--- a build cut short resumes"
cp -r "$tmp/c1" "$tmp/cut"
seeds_dir="$(ls -d "$tmp"/cut/tiny-seeds-*)"
rm "$seeds_dir/manifest.json"
head -c 1000 "$seeds_dir/mlp-seed1.safetensors" >"$seeds_dir/x" && mv "$seeds_dir/x" "$seeds_dir/mlp-seed1.safetensors"
rm "$seeds_dir/mlp-seed2.safetensors"
run_np 2 "$tmp/resume.out" zoo build "$tmp/tiny.yaml" --cache "$tmp/cut" --suite tiny-seeds
if grep -q "mlp-seed0: reusing" "$tmp/resume.out" && ! grep -q "mlp-seed1: reusing" "$tmp/resume.out" \
        && diff -r "$tmp/c1" "$tmp/cut" >/dev/null; then
    ok "resumed build reused the complete file, rebuilt the truncated and missing ones, identical result"
else fail "resume"; sed 's/^/    | /' "$tmp/resume.out" | tail; diff -rq "$tmp/c1" "$tmp/cut" | head -3; fi

echo "--- ligand zoo list"
if "$bin" zoo list --cache "$tmp/c1" >"$tmp/list.out" 2>&1 && grep -q "tiny-tasks (tasks" "$tmp/list.out" && grep -q "mlp-seed2 .*test" "$tmp/list.out"; then
    ok "zoo list shows both suites with accuracies"
else fail "zoo list"; cat "$tmp/list.out"; fi

echo "--- ligand eval: identical tables for -np 1, 2, 4"
for suite in tiny-seeds tiny-tasks; do
    for np in 1 2 4; do
        run_np "$np" "$tmp/eval-$suite-$np.out" eval "$suite" --quiet --cache "$tmp/c1" --json "$tmp/eval-$suite-$np.json" \
            || { fail "eval $suite -np $np"; sed 's/^/    | /' "$tmp/eval-$suite-$np.out" | tail; }
    done
    if grep -q "ensemble (mean softmax)" "$tmp/eval-$suite-1.out" && cmp -s "$tmp/eval-$suite-1.json" "$tmp/eval-$suite-2.json" \
            && cmp -s "$tmp/eval-$suite-1.json" "$tmp/eval-$suite-4.json" \
            && diff <(grep -v '^wrote' "$tmp/eval-$suite-1.out") <(grep -v '^wrote' "$tmp/eval-$suite-4.out") >/dev/null; then
        ok "eval $suite: same table and JSON for -np 1, 2, 4"
    else fail "eval $suite differs across rank counts"; diff "$tmp/eval-$suite-1.out" "$tmp/eval-$suite-4.out" | head; fi
done
sed 's/^/    | /' "$tmp/eval-tiny-tasks-2.out"

echo "--- bad input: one clear error, cache untouched"
snapshot() { find "$tmp/c1" -type f -printf '%p %s %T@\n' | sort; }
cache_before="$(snapshot)"
sed 's/    epochs: 1$/    epochs: 1\n    epoch: 2/' "$tmp/tiny.yaml" >"$tmp/unknown.yaml"
expect_error recipe-unknown-key "unknown.yaml: suites.tiny-seeds.epoch: unknown key" 2 zoo build "$tmp/unknown.yaml" --cache "$tmp/c1"
sed 's/    models: 3/    models: -1/' "$tmp/tiny.yaml" >"$tmp/bad.yaml"
expect_error recipe-bad-value "bad.yaml: suites.tiny-seeds.models: must be an integer in 1...1000, got -1" 2 zoo build "$tmp/bad.yaml" --cache "$tmp/c1"
seed_file="$(ls "$tmp"/c1/tiny-seeds-*/mlp-seed0.safetensors)"
other_file="$(ls "$tmp"/c1/tiny-tasks-*/mlp-pretrained.safetensors)"
expect_error eval-mixed-architectures "mlp-pretrained.safetensors: holds a mlp 784-32-10, but .* is a mlp 784-16-10" 2 \
    eval "$seed_file" "$other_file"
expect_error eval-missing-data "$tmp/no-data: data set: the directory does not exist" 2 eval tiny-seeds --cache "$tmp/c1" --data "$tmp/no-data"
expect_error build-missing-data "$tmp/no-data: data set: the directory does not exist" 2 zoo build "$tmp/tiny.yaml" --cache "$tmp/c9" --data "$tmp/no-data"
if [[ "$(snapshot)" == "$cache_before" && ! -e "$tmp/c9" ]]; then ok "the failed commands left the caches as they were"
else fail "a failed command changed a cache"; fi

echo "--- splits suite: one ensemble per partition, identical for -np 1 and 2"
cat >"$tmp/splits.yaml" <<'YAML'
suites:
  tiny-splits:
    kind: splits
    calibration: 500
    train_images: 3000
    architectures: [{kind: mlp, hidden: [16]}]
    partitions:
      - {type: classes, parts: 2}
      - {type: dirichlet, parts: 2, alpha: 0.5}
    epochs: 1
YAML
if run_np 2 "$tmp/splits-build.out" zoo build "$tmp/splits.yaml" --cache "$tmp/cs" --quiet \
        && run_np 1 "$tmp/splits-eval1.out" eval tiny-splits --quiet --cache "$tmp/cs" \
        && run_np 2 "$tmp/splits-eval2.out" eval tiny-splits --quiet --cache "$tmp/cs"; then
    if cmp -s "$tmp/splits-eval1.out" "$tmp/splits-eval2.out" && grep -q "partition 0 (classes × 2)" "$tmp/splits-eval1.out" \
            && grep -q "partition 1 (dirichlet × 2, α = 0.5)" "$tmp/splits-eval1.out" \
            && (( $(grep -c "ensemble (mean softmax)" "$tmp/splits-eval1.out") == 2 )); then
        ok "splits eval: a table and an ensemble per partition, identical for -np 1 and 2"
    else fail "splits eval tables"; sed 's/^/    | /' "$tmp/splits-eval1.out" | head -30; fi
else fail "splits build/eval"; sed 's/^/    | /' "$tmp"/splits-*.out | tail -20; fi

echo "zoo tests: $passed passed, $failed failed"
(( failed == 0 ))
