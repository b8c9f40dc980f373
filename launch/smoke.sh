#!/usr/bin/env bash
# Smoke test of the launch path on this machine: `ligand info` without mpirun and under mpirun
# with 1, 2 and 4 ranks (launch/cluster.sh with hostfiles/localhost), then the failures a user meets first: a missing
# hostfile, a malformed one, an unresolvable host, and a rank that fails. Each failure must end
# non-zero with a readable message within seconds. Uses LIGAND_BIN if set, else builds release.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT" || exit 1

bin="$(ligand_bin)" || exit 1
export LIGAND_BIN="$bin"   # cluster.sh then uses this binary instead of building
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ligand-smoke.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
LIMIT=30   # seconds any single check may take; a hang is a failure

ok()   { echo "ok:   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# run NAME CMD... : runs CMD with a time limit, output in $tmp/NAME.out, status in $rc, seconds in $secs.
run() {
    local name="$1"; shift
    local start=$SECONDS
    timeout --kill-after=5 "$LIMIT" "$@" >"$tmp/$name.out" 2>&1 </dev/null
    rc=$?
    secs=$((SECONDS - start))
}
show() { sed 's/^/    | /' "$tmp/$1.out" | head -n "${2:-40}"; }

# expect_fail NAME PATTERN CMD... : CMD must exit non-zero (not by timeout) and print PATTERN.
expect_fail() {
    local name="$1" pattern="$2"; shift 2
    run "$name" "$@"
    if (( rc == 124 || rc == 137 )); then
        fail "$name: still running after ${LIMIT}s"; show "$name"
    elif (( rc == 0 )); then
        fail "$name: exited 0, expected a failure"; show "$name"
    elif ! grep -aEq -- "$pattern" "$tmp/$name.out"; then
        fail "$name: exit $rc, but no message matching /$pattern/"; show "$name"
    else
        ok "$name: exit $rc in ${secs}s: $(grep -aEm1 -- "$pattern" "$tmp/$name.out" | sed 's/^ *//')"
    fi
}

echo "--- ligand info without mpirun"
run info-single "$bin" info --models 3
if (( rc == 0 )) && grep -aq '^rank 0: .*models 0\.\.<3' "$tmp/info-single.out" \
        && grep -aq 'no MPI (single process)' "$tmp/info-single.out"; then
    ok "info without mpirun: one rank holding models 0..<3, no MPI"
else
    fail "info without mpirun (exit $rc)"; show info-single
fi

for np in 1 2 4; do
    echo "--- ligand info under mpirun -np $np (hostfiles/localhost)"
    run "info-np$np" bash launch/cluster.sh hostfiles/localhost -np "$np" -- info --models 8
    out="$tmp/info-np$np.out"
    missing=""
    for (( r = 0; r < np; r++ )); do
        grep -aq "^rank $r: " "$out" || missing+=" $r"
    done
    lines=$(grep -ac '^rank [0-9]*: ' "$out")
    if (( rc == 0 )) && [[ -z "$missing" ]] && (( lines == np )) && grep -aq '^ranks: '"$np"',' "$out" \
            && grep -aq '^MPI: ' "$out" && ! grep -aq 'no MPI' "$out"; then
        ok "info -np $np: all $np ranks listed, $(grep -am1 '^MPI: ' "$out") (${secs}s)"
        if (( np == 4 )); then show "info-np$np" 20; fi
    else
        fail "info -np $np: exit $rc, ranks missing:${missing:- none}, $lines rank line(s)"; show "info-np$np"
    fi
done

echo "--- wrong hostfiles"
expect_fail hostfile-missing "$tmp/no-such-hostfile.*does not exist" \
    bash launch/cluster.sh "$tmp/no-such-hostfile" -np 2 -- info

printf 'localhost slots=2\nlocalhost slots=two\n' >"$tmp/malformed"
expect_fail hostfile-malformed "$tmp/malformed line 2: slots must be a positive integer" \
    bash launch/cluster.sh "$tmp/malformed" -np 2 -- info

printf 'localhost slots=2 cpus=4\n' >"$tmp/unknown-field"
expect_fail hostfile-unknown-field "$tmp/unknown-field line 1: unknown field 'cpus=4'" \
    bash launch/cluster.sh "$tmp/unknown-field" -np 2 -- info

printf '# a node that does not exist\nno-such-host.invalid slots=2\n' >"$tmp/unresolvable"
expect_fail hostfile-unresolvable "$tmp/unresolvable line 2: host 'no-such-host.invalid' does not resolve" \
    bash launch/cluster.sh "$tmp/unresolvable" -np 2 -- info

# Past the launcher's own check, OpenMPI itself must still fail fast: no ssh is attempted
# (plm_rsh_agent=false), so the daemon on the unknown node cannot start and mpirun says so.
expect_fail mpirun-unresolvable "unable to reliably start one or more daemons|Could not resolve|ORTE" \
    env LIGAND_SKIP_RESOLVE=1 bash launch/cluster.sh "$tmp/unresolvable" -np 2 --mca plm_rsh_agent false -- info

echo "--- a failing rank"
# The failure must name rank 1, either in ligand's own message or in OpenMPI's MPI_ABORT notice.
failed_rank='rank 1 of [0-9]+|MPI_ABORT was invoked on rank 1|rank 1[^0-9].*(fail|abort)'
selftest_help="$("$bin" selftest-mpi --help 2>&1 </dev/null || true)"
if [[ "$selftest_help" == *--fail-on-rank* ]]; then
    expect_fail failing-rank "$failed_rank" \
        bash launch/cluster.sh hostfiles/localhost -np 2 -- selftest-mpi --fail-on-rank 1
    expect_fail failing-rank-np4 "$failed_rank" \
        bash launch/cluster.sh hostfiles/localhost -np 4 -- selftest-mpi --fail-on-rank 1
else
    echo "SKIPPED: failing-rank check missing ('ligand selftest-mpi' does not exist yet)"
fi

echo "smoke: $passed passed, $failed failed"
(( failed == 0 ))
