#!/usr/bin/env bash
# MPI tests of the collective layer under real mpirun (builds nothing):
#   bash launch/mpi-tests.sh [path/to/ligand]      (default: .build/release/ligand)
# Runs `ligand selftest-mpi` with -np 1..4, checks that the deterministic-sum digest is the
# same for every -np, and that a rank failing on purpose ends the job non-zero within 20 s.
# Last line: "mpi-tests: N passed, M failed"; exit 1 on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN="${1:-.build/release/ligand}"
[[ -x "$BIN" ]] || { echo "error: no ligand binary at $BIN (build it: swift build -c release)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "error: mpirun not found (apt-get install openmpi-bin)" >&2; exit 1; }

# mpirun refuses to start as root without both of these (CI and containers run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/ligand-mpi-tests.XXXXXX")"
trap 'rm -rf "$LOGDIR"' EXIT
passed=0
failed=0
failures=()

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL $1"; }

run_mpi() {   # run_mpi NP LOG ARGS...: mpirun with a hard time limit; returns its exit code
    local np="$1" log="$2"; shift 2
    local rc=0
    timeout --kill-after=5 120 mpirun --allow-run-as-root --oversubscribe -np "$np" \
        -x OPENBLAS_NUM_THREADS=1 "$BIN" selftest-mpi "$@" >"$log" 2>&1 || rc=$?
    return "$rc"
}

digests=()
for np in 1 2 3 4; do
    log="$LOGDIR/np$np.log"
    rc=0
    run_mpi "$np" "$log" || rc=$?
    if (( rc == 0 )) && grep -q "^selftest-mpi: [0-9]* checks passed on $np ranks$" "$log"; then
        pass "selftest-mpi -np $np: $(grep '^selftest-mpi:' "$log" | sed 's/^selftest-mpi: //')"
    else
        fail "selftest-mpi -np $np (exit $rc)"
        sed 's/^/    /' "$log" | tail -20
    fi
    d="$(sed -n 's/^deterministic-sum-sha: //p' "$log" | head -1)"
    digests+=("${d:-missing}")
    echo "    -np $np deterministic-sum-sha: ${d:-missing}"
done

# Without mpirun (MPI never initialised) and on in-process ranks: same checks, same digest.
for mode in "no mpirun" "in-process 4"; do
    log="$LOGDIR/${mode// /-}.log"
    args=()
    [[ "$mode" == "in-process 4" ]] && args=(--in-process-ranks 4)
    rc=0
    env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK timeout --kill-after=5 60 "$BIN" selftest-mpi "${args[@]}" >"$log" 2>&1 || rc=$?
    if (( rc == 0 )) && grep -q "^selftest-mpi: [0-9]* checks passed" "$log"; then
        pass "selftest-mpi $mode: $(grep '^selftest-mpi:' "$log" | sed 's/^selftest-mpi: //')"
    else
        fail "selftest-mpi $mode (exit $rc)"
        sed 's/^/    /' "$log" | tail -20
    fi
    d="$(sed -n 's/^deterministic-sum-sha: //p' "$log" | head -1)"
    digests+=("${d:-missing}")
    echo "    $mode deterministic-sum-sha: ${d:-missing}"
done

if [[ "${digests[0]}" != "missing" ]] && [[ "$(printf '%s\n' "${digests[@]}" | sort -u | wc -l)" -eq 1 ]]; then
    pass "deterministic sum bitwise identical for -np 1..4, without mpirun and in-process (${digests[0]})"
else
    fail "deterministic sum digests differ (-np 1..4, no mpirun, in-process): ${digests[*]}"
fi

# A failing rank must end the whole job, non-zero, with a message naming it, and not hang.
log="$LOGDIR/fail.log"
start=$SECONDS
rc=0
timeout --kill-after=5 20 mpirun --allow-run-as-root --oversubscribe -np 2 -x OPENBLAS_NUM_THREADS=1 \
    "$BIN" selftest-mpi --fail-on-rank 1 >"$log" 2>&1 || rc=$?
elapsed=$((SECONDS - start))
if (( rc == 124 || rc == 137 )); then
    fail "--fail-on-rank 1 -np 2 hung (killed by timeout after ${elapsed}s)"
    sed 's/^/    /' "$log" | tail -20
elif (( rc == 0 )); then
    fail "--fail-on-rank 1 -np 2 exited 0"
elif ! grep -q "rank 1 of 2 failed: check 'injected failure' failed" "$log"; then
    fail "--fail-on-rank 1 -np 2 exited $rc without naming the failing rank"
    sed 's/^/    /' "$log" | tail -20
else
    pass "--fail-on-rank 1 -np 2 ended the job with exit $rc in ${elapsed}s"
fi

if (( failed > 0 )); then
    printf 'failed: %s\n' "${failures[@]}"
    echo "mpi-tests: $passed passed, $failed failed"
    exit 1
fi
echo "mpi-tests: $passed passed, 0 failed"
