#!/usr/bin/env bash
# The main job (the README's first command). Today it installs what is missing, builds, and
# shows how two MPI ranks would share the collaborating models (`ligand info`). The steps below
# are where training the model zoo, fusing it and writing the report will go, in that order.
#
# Environment: DEMO_RANKS (default 2) ranks on this machine; DEMO_MODELS (default 4) models.
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

# Next steps, added as the commands land:
#   step "train the model zoo"   (ligand zoo ..., cached on disk by its recipe)
#   step "fuse"                  (ligand merge ... under mpirun, one block of models per rank)
#   step "report"                (JSON, Markdown and SVG on rank 0)

step "done"
