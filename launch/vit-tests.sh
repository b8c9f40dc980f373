#!/usr/bin/env bash
# MPI tests of the Vision Transformer on a tiny ViT zoo (width 16, patch 7, 2 blocks, a few thousand images,
# built into a temporary cache): every shared-origin method (average, task arithmetic, TIES, DARE, RegMean,
# progressive, NeuLig) gives a bitwise-identical fused file and the same table under mpirun -np 1, 2 and 4,
# one expert per rank; weight averaging of a ViT seeds suite too. Refused with one clear error and nothing
# written: alignment (cca, permute) of ViTs, and a ViT merged with an MLP.
#
#   bash launch/vit-tests.sh [BIN]      (default: LIGAND_BIN, else a release build)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT" || exit 1

source "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"
test_setup vit "${1:-}"
export LIGAND_ZOO_CACHE="$tmp/cache"
cat >"$tmp/tiny-vit.yaml" <<'YAML'
suites:
  tiny-vit-tasks:
    kind: tasks
    calibration: 500
    train_images: 3000
    architectures: [{kind: vit, width: 16, patch: 7, depth: 2, heads: 2}]
    optimizer: adamw
    weight_decay: 0.05
    tasks: [rotate90, invert, coarse]
    pretrain: {images: 1000, epochs: 2, lr: 0.002}
    expert_images: 2000
    shots: 5
    epochs: 1
    lr: 0.0005
  tiny-vit-seeds:
    kind: seeds
    seed: 3
    calibration: 500
    train_images: 2000
    architectures: [{kind: vit, width: 16, patch: 7, depth: 2, heads: 2}]
    optimizer: adamw
    lr: 0.002
    models: 3
    epochs: 1
YAML

echo "--- build the tiny ViT zoo"
if run_np 2 "$tmp/build.out" zoo build "$tmp/tiny-vit.yaml" --quiet; then ok "zoo build ($(ls "$tmp"/cache/*/*.safetensors | wc -l) ViT model files)"
else fail "zoo build"; sed 's/^/    | /' "$tmp/build.out" | tail -20; echo "vit tests: $passed passed, $failed failed"; exit 1; fi

echo "--- every shared-origin method: the same fused file and table for -np 1, 2 and 4"
check_method() {   # check_method SUITE METHOD FILE ROW ARGS...
    merge_on_ranks "$2-$1" "$@"
}
check_method tiny-vit-tasks average average.safetensors "fused: average"
check_method tiny-vit-tasks task-arithmetic task-arithmetic.safetensors "fused: task-arithmetic" --lambdas 0.3,0.6,1
check_method tiny-vit-tasks ties ties.safetensors "fused: ties" --lambdas 0.5,1 --ties-k 20
check_method tiny-vit-tasks dare dare.safetensors "fused: dare" --lambdas 0.5,1 --drop 0.3,0.6
check_method tiny-vit-tasks regmean regmean.safetensors "fused: regmean" --ridges 1e-2
check_method tiny-vit-tasks progressive progressive.safetensors "fused: progressive" --ridges 1e-2
check_method tiny-vit-tasks neulig neulig-global.safetensors "NeuLig fused, global mode" --loss sup --epochs 60 --calibration-samples 300
check_method tiny-vit-seeds average average.safetensors "fused: average"
# ViTs of different seeds aligned: one permutation of the residual stream, one per MLP hidden layer.
check_method tiny-vit-seeds permute permute.safetensors "fused: permute"
check_method tiny-vit-seeds weight-matching weight-matching.safetensors "fused: weight-matching"
# CCA: dense maps on the MLP hidden layers, permutations on the stream and heads; then multi-level fusions on top.
check_method tiny-vit-seeds cca cca.safetensors "fused: cca" --gammas 0.01,1
# The ablation: CCA's dense map on the stream too, every LayerNorm folded into the layer it feeds.
merge_on_ranks cca-dense-stream tiny-vit-seeds cca cca.safetensors "fused: cca" --gammas 0.01,1 --stream dense
check_method tiny-vit-seeds progressive progressive.safetensors "fused: progressive after cca" --align cca --gammas 0.1 --ridges 1e-2
check_method tiny-vit-seeds neulig neulig-global.safetensors "permute then NeuLig, fused" --align permute --epochs 20 --calibration-samples 300

echo "--- refused: a ViT merged with an MLP"
merge_error() { local name="$1" pattern="$2" np="$3"; shift 3; expect_error "$name" "$pattern" "$np" merge --out "$tmp/bad-$name" --quiet "$@"; }
"$bin" init --arch mlp --hidden 8 --out "$tmp/mlp.safetensors" >/dev/null 2>&1 || fail "init mlp"
vit0=$(ls "$tmp"/cache/tiny-vit-seeds-*/vit-seed0.safetensors)
merge_error vit-with-mlp "holds a (vit|mlp).*but.*holds a (mlp|vit)" 1 --method average --model-files "$vit0,$tmp/mlp.safetensors"

echo "vit tests: $passed passed, $failed failed"
(( failed == 0 ))
