#!/usr/bin/env bash
# The main job (the README's first command): installs what is missing, builds, checks the MPI
# launch (`ligand info`), then runs `ligand run recipes/run-demo.yaml` under mpirun: it builds the
# demo model zoo (recipes/demo.yaml: four seed MLPs and an eight-task MLP suite, cached in cache/zoo,
# so a second run skips the training), fuses the task experts (NeuLig, averaging, task arithmetic,
# TIES) and the seed models (averaging, permutation, CCA) over a small K grid, prints the results
# table and writes the report (docs/run.md) to out/demo.
#
# Environment: DEMO_RANKS (default 2) ranks on this machine; DEMO_MODELS (default 4) models for
# the launch check; DEMO_OUT (default out/demo) the report's directory; LIGAND_ZOO_CACHE moves the cache;
# OPENBLAS_CORETYPE (default Haswell on x86-64 with AVX2: the README's figures are that kernel's).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT"

RANKS="${DEMO_RANKS:-2}"
MODELS="${DEMO_MODELS:-4}"
OUT="${DEMO_OUT:-out/demo}"

step() { printf '\n== demo: %s\n' "$*"; }

step "setup"
bash launch/setup.sh

ligand_pin_blas_kernel
kernel="${OPENBLAS_CORETYPE:-}"
step "build (release)"
bin="$(ligand_bin)"
export LIGAND_BIN="$bin"

step "launch check: $RANKS ranks, $MODELS models, on this machine"
bash launch/cluster.sh hostfiles/localhost -np "$RANKS" -- info --models "$MODELS"

step "ligand run recipes/run-demo.yaml on $RANKS ranks (OpenBLAS kernel: ${kernel:-chosen by OpenBLAS}): builds the demo zoo when it is not cached, merges, reports"
ligand_mpirun -np "$RANKS" -- "$bin" run recipes/run-demo.yaml --out "$OUT"

step "done"
