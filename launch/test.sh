#!/usr/bin/env bash
# The whole test suite (the README's test command, and what .ci/run runs):
#   setup → release build (no warnings from Sources/) → swift test → MPI tests (mpirun -np 1..4)
#   → model-zoo and eval tests (mpirun -np 1, 2, 4) → the ViT through every shared-origin method (mpirun -np 1, 2, 4)
#   → Python interoperability tests → launch smoke test
#   → the README's demo tables against what the main command (launch/demo.sh) prints
#   → libFuzzer over the file and recipe readers (launch/fuzz.sh, regression inputs replayed first).
# Every stage runs even if an earlier one failed (stages that need the binary are marked failed
# when the build failed); the last line is "N passed, N failed" over the stages.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT" || exit 1

BIN=".build/release/ligand"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/ligand-test.XXXXXX")"
trap 'rm -rf "$LOGDIR"' EXIT
passed=0; failed=0; skipped=0
results=()
build_ok=0
total_start=$SECONDS

header() { printf '\n===== %s =====\n' "$*"; }
record() {   # record STAGE STATUS SECONDS
    results+=("$(printf '%-8s %-14s %5ss' "$2" "$1" "$3")")
    case "$2" in
        PASS) passed=$((passed + 1)) ;;
        SKIPPED) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)) ;;
    esac
}

# stage NAME CMD... : runs one stage with a header and its duration.
stage() {
    local name="$1"; shift
    header "$name: $*"
    local start=$SECONDS
    "$@"
    local rc=$?
    if (( rc == 0 )); then record "$name" PASS $((SECONDS - start))
    # 77: the stage cannot run on this machine (it printed why), e.g. no network namespaces.
    elif (( rc == 77 )); then echo "stage $name SKIPPED (exit 77, see above)"; record "$name" SKIPPED $((SECONDS - start))
    else echo "stage $name FAILED (exit $rc)"; record "$name" FAIL $((SECONDS - start)); fi
}

# stage_script NAME SCRIPT ARGS... : like stage, but a stage whose script has not been written yet
# is skipped loudly instead of failing.
stage_script() {
    local name="$1" script="$2"
    if [[ ! -f "$script" ]]; then
        header "$name"
        echo "SKIPPED: $name missing ($script does not exist)"
        record "$name" SKIPPED 0
        return
    fi
    if (( ! build_ok )); then
        header "$name"
        echo "not run: the release build failed"
        record "$name" FAIL 0
        return
    fi
    shift 2
    stage "$name" "$@"
}

release_build() {
    # Warnings only show when a file is compiled: a fresh clone (CI) compiles every file.
    swift build -c release 2>&1 | tee "$LOGDIR/build.log"
    local rc=${PIPESTATUS[0]}
    (( rc == 0 )) || return "$rc"
    if grep -E "(^|/)Sources/[^:]*:[0-9]+:[0-9]+: warning:" "$LOGDIR/build.log" >"$LOGDIR/warnings"; then
        echo "the release build printed $(wc -l <"$LOGDIR/warnings") warning(s) from Sources/:"
        cat "$LOGDIR/warnings"
        return 1
    fi
    [[ -x "$BIN" ]] || { echo "no binary at $BIN"; return 1; }
    build_ok=1
}

stage setup bash launch/setup.sh
stage build release_build
stage swift-test swift test
stage_script mpi-tests launch/mpi-tests.sh bash launch/mpi-tests.sh "$BIN"
stage_script zoo-tests launch/zoo-tests.sh bash launch/zoo-tests.sh "$BIN"
stage_script merge-tests launch/merge-tests.sh bash launch/merge-tests.sh "$BIN"
stage_script neulig-tests launch/neulig-tests.sh bash launch/neulig-tests.sh "$BIN"
stage_script vit-tests launch/vit-tests.sh bash launch/vit-tests.sh "$BIN"
stage_script multihost launch/multihost-tests.sh bash launch/multihost-tests.sh "$BIN"
stage_script python-tests launch/python-tests.sh env LIGAND_BIN="$BIN" bash launch/python-tests.sh
stage_script smoke launch/smoke.sh env LIGAND_BIN="$BIN" bash launch/smoke.sh
stage_script readme launch/readme-check.sh bash launch/readme-check.sh "$BIN"
# 30 s per target keeps the stage (instrumented build included) near 5 minutes; the long run is
# `bash launch/fuzz.sh 600`.
stage_script fuzz launch/fuzz.sh bash launch/fuzz.sh 30

header "summary ($((SECONDS - total_start))s)"
printf '%s\n' "${results[@]}"
if (( skipped > 0 )); then
    echo "test: $passed passed, $failed failed, $skipped skipped"
else
    echo "test: $passed passed, $failed failed"
fi
(( failed == 0 ))
