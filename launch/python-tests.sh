#!/usr/bin/env bash
# Python interoperability tests (Tests/python) against the ligand binary.
#   LIGAND_BIN=path/to/ligand bash launch/python-tests.sh [pytest args...]
# LIGAND_BIN defaults to .build/debug/ligand. Installs safetensors, numpy and pytest with pip,
# quietly and only when missing.
set -euo pipefail
# A relative LIGAND_BIN is taken from the caller's directory when it exists there.
if [[ -n "${LIGAND_BIN:-}" && "$LIGAND_BIN" != /* && -e "$LIGAND_BIN" ]]; then
    LIGAND_BIN="$(pwd)/$LIGAND_BIN"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || { echo "error: $PYTHON not found" >&2; exit 1; }

missing=()
for module in safetensors numpy pytest; do
    "$PYTHON" -c "import $module" >/dev/null 2>&1 || missing+=("$module")
done
if (( ${#missing[@]} > 0 )); then
    echo "installing ${missing[*]} with pip" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${missing[@]}" \
        || "$PYTHON" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi

export LIGAND_BIN="${LIGAND_BIN:-.build/debug/ligand}"
[[ -x "$LIGAND_BIN" ]] || { echo "error: LIGAND_BIN=$LIGAND_BIN is not an executable (build it first)" >&2; exit 1; }
exec "$PYTHON" -m pytest -q -p no:cacheprovider Tests/python "$@"
