#!/usr/bin/env bash
# Checks that the README's demo tables are what the main command prints: runs the README's main
# command itself, `bash launch/demo.sh` (set-up, build, launch check, then `ligand run
# recipes/run-demo.yaml` on 2 ranks with the pinned OpenBLAS kernel; the demo zoo built into the
# cache when missing), its report written to a temporary directory, and compares every accuracy
# cell of its report.md with the README's tables (the wall-time column, which varies, aside).
# Usage: bash launch/readme-check.sh [LIGAND_BIN]. Exit 77 (skipped) off x86-64/AVX2, whose
# BLAS kernels round differently from the pinned one the README was made with.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT"
bin="${1:-$(ligand_bin)}"

ligand_pin_blas_kernel
kernel="${OPENBLAS_CORETYPE:-}"
if [[ "$kernel" != Haswell ]]; then
    echo "readme-check: skipped: the README's figures come from OpenBLAS's Haswell kernel, this machine runs '${kernel:-its own choice}'"
    exit 77
fi

out="$(mktemp -d "${TMPDIR:-/tmp}/ligand-readme.XXXXXX")"
trap 'rm -rf "$out"' EXIT
DEMO_RANKS=2 DEMO_OUT="$out/demo" LIGAND_BIN="$bin" bash launch/demo.sh

python3 - "$out/demo/report.md" README.md <<'EOF'
import sys

def rows(path, wall):
    """Table rows keyed by (table number, method, K): the cells after K, without the wall time (`wall`: the last
    column is the wall time, which the report prints and the README leaves out)."""
    out, table, inside = {}, -1, False
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith("| method |"):
            table += 1; inside = True; continue
        if not line.startswith("|"):
            inside = False; continue
        if not inside or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[(table, cells[0], cells[1])] = cells[2:-1] if wall else cells[2:]
    return out

report = rows(sys.argv[1], wall=True)
# The demo's two tables (demo-tasks, demo-seeds) are the README's first two method tables.
readme = {k: v for k, v in rows(sys.argv[2], wall=False).items() if k[0] < 2}
if not readme:
    sys.exit("readme-check: README.md has no demo table")
bad = 0
for key, cells in sorted(report.items()):
    if key not in readme:
        print(f"README.md lacks the row {key[1]} K={key[2]} of table {key[0] + 1}"); bad += 1
    elif readme[key] != cells:
        print(f"table {key[0] + 1}, {key[1]} K={key[2]}: README {readme[key]} but the command prints {cells}"); bad += 1
for key in sorted(set(readme) - set(report)):
    print(f"README.md has a row the command does not print: {key[1]} K={key[2]} of table {key[0] + 1}"); bad += 1
if bad:
    sys.exit(f"readme-check: {bad} row(s) of the README's demo tables differ from what `ligand run recipes/run-demo.yaml` prints")
print(f"readme-check: all {len(report)} rows of the README's demo tables match the command's output")
EOF
