#!/usr/bin/env bash
# The main job (the README's first command): installs what is missing, builds, checks the MPI
# launch (`ligand info`), builds the demo model zoo (recipes/demo.yaml: four seed MLPs and an
# eight-task MLP suite, cached in cache/zoo, so a second run skips the training) under mpirun with
# one rank per model in turn, then evaluates both suites (`ligand eval`: each model, the prediction
# ensembles and, for the tasks suite, the pretrained backbone, weight averaging and task arithmetic),
# writing the tables' JSON to out/demo-*.json.
#
# Environment: DEMO_RANKS (default 2) ranks on this machine; DEMO_MODELS (default 4) models for
# the launch check; LIGAND_ZOO_CACHE moves the cache.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT"

RANKS="${DEMO_RANKS:-2}"
MODELS="${DEMO_MODELS:-4}"

step() { printf '\n== demo: %s\n' "$*"; }

step "setup"
bash launch/setup.sh

step "build (release)"
bin="$(ligand_bin)"
export LIGAND_BIN="$bin"

step "launch check: $RANKS ranks, $MODELS models, on this machine"
bash launch/cluster.sh hostfiles/localhost -np "$RANKS" -- info --models "$MODELS"

step "model zoo: recipes/demo.yaml on $RANKS ranks (cached: an unchanged recipe is not rebuilt)"
ligand_mpirun -np "$RANKS" -- "$bin" zoo build recipes/demo.yaml --quiet
"$bin" zoo list

mkdir -p out
for suite in demo-seeds demo-tasks; do
    step "evaluate $suite on $RANKS ranks (accuracy in %, official test set)"
    ligand_mpirun -np "$RANKS" -- "$bin" eval "$suite" --json "out/$suite.json"
done

step "fuse demo-tasks with NeuLig on $RANKS ranks (Portland on 500 calibration images per task, 200 epochs)"
ligand_mpirun -np "$RANKS" -- "$bin" merge --method neulig --suite demo-tasks --loss sup --epochs 200 \
    --calibration-samples 500 --out out/demo-tasks-neulig --quiet

# Next: the alignment methods on demo-seeds (ligand merge --method cca ...) and the report (Markdown, SVG).

step "done"
