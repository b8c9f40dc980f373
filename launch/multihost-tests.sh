#!/usr/bin/env bash
# Multi-host tests on one machine: four test hosts made of network namespaces (launch/netns-hosts.sh),
# reached by mpirun through launch/netns-rsh instead of ssh, talking TCP over a bridge only.
#   - `ligand merge --method neulig` on a tiny tasks suite across the hosts (-np 2 and -np 4: one rank
#     per host; -np 3: two and one) writes a fused file bitwise identical to the single-host -np 2 run,
#     with the same report figures; `ligand eval` across the hosts prints the same table and JSON.
#   - kill -9 of every ligand process of host 2 midway, and host 2's link taken down midway (-np 2), and
#     kill -9 on host 4 of four (-np 4): each ends the job non-zero within a bound, with no fused file and
#     the checkpoints intact; a rerun of the same command resumes and ends bitwise identical to an
#     undisturbed run (the -np 2 one: the rank count changes no bit).
# The hosts are run K of netns-hosts.sh (names lgKh1 … lgKh4, subnet 10.213.K.0/24, K claimed free at
# start), so two runs on one machine never share a name or an address. After each fault the run is
# settled (netns-hosts.sh settle: no process, socket or session dir of the killed job left, every
# host reaching every other) before the rerun starts. Every namespace is removed on exit, also on
# failure or interrupt. Exit 77 (SKIPPED) when this machine cannot
# create namespaces (not root, no iproute2, no netns support), with the reason.
#
#   bash launch/multihost-tests.sh [BIN]      (default: LIGAND_BIN, else a release build)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT" || exit 1

if ! reason=$(bash launch/netns-hosts.sh check 2>&1); then
    echo "SKIPPED: cannot create test hosts here: ${reason#netns-hosts: unavailable: }"
    exit 77
fi

source "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"
test_setup multihost "${1:-}"
export LIGAND_ZOO_CACHE="$tmp/cache"
# The hostfile names hosts by address; getent cannot resolve a bare address without a PTR record.
export LIGAND_SKIP_RESOLVE=1
bg_groups=()
run=""   # this run's number K (netns-hosts.sh), once claimed
cleanup() {
    local g
    for g in "${bg_groups[@]}"; do kill -9 -- "-$g" 2>/dev/null; done
    [[ -n "$run" ]] && bash launch/netns-hosts.sh down "$run"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run=$(bash launch/netns-hosts.sh up 4 --run auto --hostfile "$tmp/hosts") \
    || { fail "netns-hosts.sh up 4"; echo "multihost tests: $passed passed, $failed failed"; exit 1; }
net="10.213.$run" h1="lg${run}h1" h2="lg${run}h2" h4="lg${run}h4" link2="lg${run}v2"

# mpirun stays in the root namespace: it reaches every host over the bridge (10.213.K.1), so no
# host is special and a fault on host 2 never takes the launcher down with it.
#  - plm_rsh_no_tree_spawn: mpirun starts every daemon itself (the agent only works from here).
#  - btl tcp,self and the if_include nets: ranks of different hosts must not use shared memory or
#    any interface but the bridge, as on separate machines.
#  - mpi_yield_when_idle: the hostfile's slots exceed the machine's 2 cores, so OpenMPI does not
#    know it is oversubscribed; busy-polling ranks then starve each other (measured: 47 s instead
#    of 0.9 s of Portland for -np 3).
#  - oob_tcp_keepalive_*: a dead link raises no TCP error by itself; with the defaults (300 s idle,
#    9 probes 20 s apart) the job hung for the whole 88 s we watched. With these, mpirun notices the
#    silent daemon after about 2 + 3 × 1 s and aborts the job ("ORTE has lost communication").
multihost_mca=(--hostfile "$tmp/hosts"
    --mca plm_rsh_agent "$LIGAND_ROOT/launch/netns-rsh" --mca plm_rsh_no_tree_spawn 1
    --mca oob_tcp_if_include "$net.0/24" --mca btl_tcp_if_include "$net.0/24" --mca btl tcp,self
    --mca mpi_yield_when_idle 1
    --mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3)

# run_hosts NP MAP OUT ARGS...: ligand across the netns hosts, NP ranks placed --map-by MAP
# (slot: fill host 1's 2 slots first; node: round-robin over the hosts), 300 s limit.
run_hosts() {
    local np="$1" map="$2" out="$3"; shift 3
    timeout --kill-after=5 300 bash -c 'source launch/common.sh; np="$1"; shift; ligand_mpirun -np "$np" "$@"' \
        _ "$np" --map-by "$map" "${multihost_mca[@]}" -x LIGAND_ZOO_CACHE -- "$bin" "$@" >"$out" 2>&1 </dev/null
}
# mpirun sometimes warns "plm:rsh: Warning: setpgid(...) failed in parent": the agent execs before
# mpirun's own setpgid call on the child runs (a harmless race an ssh login is too slow to lose).
quiet() { grep -v 'plm:rsh: Warning: setpgid' "$1"; }
# Drops what depends on the rank count or the clock (rank count, seconds, bytes, report path).
table() { quiet "$1" | grep -vE '^(report:|wall seconds|communication)' | sed 's/over [0-9]* rank(s)/over N rank(s)/'; }
same_json() {   # same_json A B: equal except for timings, byte counts and the rank count
    python3 - "$1" "$2" <<'PY'
import json, sys
drop = {"seconds", "ranks", "bytesCommunicated", "bytesPerPhase", "bytesPerPortlandStep", "valuesPerPortlandStep"}
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(0 if {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop} else 1)
PY
}
# The ranks of one namespace (host), by pid: its processes running $bin, whatever the binary is named.
bin_exe=$(readlink -f "$bin")
host_ligand_pids() {
    local pid
    for pid in $(ip netns pids "$1" 2>/dev/null); do
        [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$bin_exe" ]] && echo "$pid"
    done
}
# Checks every checkpoint of DIR: a complete safetensors file; prints "file:epoch ...".
checkpoints_ok() {
    compgen -G "$1/*.safetensors" >/dev/null || return 1
    python3 - "$1"/*.safetensors <<'PY'
import json, os, struct, sys
seen = []
for path in sys.argv[1:]:
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    if 8 + n + end != len(raw):
        sys.exit("%s: %d bytes, header says %d" % (path, len(raw), 8 + n + end))
    seen.append("%s:epoch %s" % (os.path.basename(path), header["__metadata__"]["epoch"]))
print(", ".join(seen))
PY
}

tiny_recipe "$tmp/tiny.yaml"
if ! run_np 2 "$tmp/build.out" zoo build "$tmp/tiny.yaml" --quiet; then
    fail "zoo build (single host)"; tail "$tmp/build.out" | sed 's/^/    | /'
    echo "multihost tests: $passed passed, $failed failed"; exit 1
fi

echo "--- the hosts"
timeout 60 bash -c 'source launch/common.sh; ligand_mpirun -np 3 "$@"' _ "${multihost_mca[@]}" -- \
    sh -c 'echo "rank $OMPI_COMM_WORLD_RANK on $(hostname) $(ip -4 -o addr show dev eth0 | awk "{print \$4}")"' \
    >"$tmp/where.out" 2>&1 </dev/null
if grep -q "rank 0 on $h1 $net.11/" "$tmp/where.out" && grep -q "rank 2 on $h2 $net.12/" "$tmp/where.out"; then
    ok "-np 3 lands on the netns hosts: $(grep '^rank' "$tmp/where.out" | sort | paste -sd';' | sed 's/;/; /g')"
else fail "ranks did not land on $h1/$h2"; sed 's/^/    | /' "$tmp/where.out" | head; fi

echo "--- NeuLig: single host vs across hosts"
merge_args=(merge --method neulig --suite tiny-tasks --loss sup --epochs 60 --calibration-samples 300 --quiet)
run_np 2 "$tmp/single.out" "${merge_args[@]}" --out "$tmp/single" || { fail "single-host merge -np 2"; tail "$tmp/single.out" | sed 's/^/    | /'; }
for layout in "2 node" "3 slot" "4 node"; do
    read -r np map <<<"$layout"
    if run_hosts "$np" "$map" "$tmp/multi$np.out" "${merge_args[@]}" --out "$tmp/multi$np"; then
        ok "merge across $([[ $np == 4 ]] && echo 4 || echo 2) hosts, -np $np $([[ $map == node ]] && echo '(1 rank per host)' || echo "(2 ranks on $h1, 1 on $h2)")"
    else fail "merge across hosts -np $np"; tail "$tmp/multi$np.out" | sed 's/^/    | /'; continue; fi
    if [[ -s "$tmp/single/neulig-global.safetensors" ]] && cmp -s "$tmp/single/neulig-global.safetensors" "$tmp/multi$np/neulig-global.safetensors"; then
        ok "-np $np across hosts: fused file bitwise identical to single host ($(sha256sum <"$tmp/single/neulig-global.safetensors" | cut -c1-16))"
    else fail "-np $np across hosts: fused file differs from single host"; fi
    if diff <(table "$tmp/single.out") <(table "$tmp/multi$np.out") >/dev/null && same_json "$tmp/single/report.json" "$tmp/multi$np/report.json"; then
        ok "-np $np across hosts: same report table and report.json figures ($(grep 'global mode' "$tmp/single.out" | tr -s ' '))"
    else fail "-np $np across hosts: report differs"; diff <(table "$tmp/single.out") <(table "$tmp/multi$np.out") | head; fi
done

echo "--- ligand eval: single host vs across hosts"
run_np 2 "$tmp/eval-single.out" eval tiny-tasks --quiet --json "$tmp/eval-single.json" || { fail "single-host eval"; tail "$tmp/eval-single.out" | sed 's/^/    | /'; }
if run_hosts 3 slot "$tmp/eval-multi.out" eval tiny-tasks --quiet --json "$tmp/eval-multi.json"; then
    if [[ -s "$tmp/eval-single.json" ]] && cmp -s "$tmp/eval-single.json" "$tmp/eval-multi.json" \
            && diff <(quiet "$tmp/eval-single.out" | grep -v '^wrote') <(quiet "$tmp/eval-multi.out" | grep -v '^wrote') >/dev/null; then
        ok "eval tiny-tasks -np 3 across hosts: same table and JSON as single host ($(grep -m1 'ensemble' "$tmp/eval-single.out" | tr -s ' '))"
    else fail "eval across hosts differs from single host"; diff "$tmp/eval-single.out" "$tmp/eval-multi.out" | head; fi
else fail "eval across hosts"; tail "$tmp/eval-multi.out" | sed 's/^/    | /'; fi

echo "--- faults across hosts"
long=(merge --method neulig --suite tiny-tasks --loss sup --epochs 2500 --calibration-samples 300 --checkpoint-every 100 --quiet --no-baselines)
bound=30
reference=full   # the undisturbed run a rerun must match
declare -A ck_epoch=()   # per fault: the epoch its checkpoints were left at
if run_hosts 2 node "$tmp/full.out" "${long[@]}" --out "$tmp/full" && [[ -s "$tmp/full/neulig-global.safetensors" ]]; then
    ok "undisturbed long run across hosts ($(grep -o 'portland [0-9.]*' "$tmp/full.out" | head -1) s)"
else fail "undisturbed long run across hosts"; tail "$tmp/full.out" | sed 's/^/    | /'; fi

# fault NAME ACTION [NP]: a long run across NP hosts (one rank per host, default 2); once every rank's
# checkpoint exists, ACTION breaks a host; then the job must end non-zero within $bound s with no fused
# file and complete checkpoints, and a rerun must resume and end like the undisturbed run.
fault() {
    local name="$1" action="$2" np="${3:-2}" out="$tmp/$1"
    # Its own session, so the whole launcher can be ended by group id if OpenMPI never gives up.
    setsid bash -c 'source launch/common.sh; np="$1"; shift; ligand_mpirun -np "$np" "$@"' _ "$np" --map-by node "${multihost_mca[@]}" \
        -x LIGAND_ZOO_CACHE -- "$bin" "${long[@]}" --out "$out" >"$tmp/$name.out" 2>&1 </dev/null &
    local job=$!
    bg_groups+=("$job")
    local i
    for i in $(seq 1 600); do
        (( $(compgen -G "$out/checkpoints/*.safetensors" | wc -l) >= np )) && break
        kill -0 "$job" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1   # midway: a few more checkpoints in
    if ! kill -0 "$job" 2>/dev/null; then fail "$name: the run ended before the fault ($(tail -1 "$tmp/$name.out"))"; return; fi
    local what
    what=$($action) || { fail "$name: could not inject the fault"; kill -9 -- "-$job" 2>/dev/null; return; }
    local start=$SECONDS rc=""
    while (( SECONDS - start <= bound )); do
        if ! kill -0 "$job" 2>/dev/null; then wait "$job"; rc=$?; break; fi
        sleep 0.2
    done
    local elapsed=$((SECONDS - start))
    if [[ -z "$rc" ]]; then
        fail "$name ($what): the job was still running after ${bound}s; killed"
        kill -9 -- "-$job" 2>/dev/null; wait "$job" 2>/dev/null
    elif (( rc != 0 )); then
        ok "$name ($what): mpirun exit $rc after ${elapsed}s: $(grep -m1 -E 'lost communication|noticed that process|exited on signal' "$tmp/$name.out" | sed 's/^ *//' | cut -c1-110)"
    else fail "$name ($what): mpirun exit 0"; fi
    [[ ! -e "$out/neulig-global.safetensors" ]] && ok "$name: no fused file written" || fail "$name: a fused file was written"
    local ck
    if ck=$(checkpoints_ok "$out/checkpoints"); then ok "$name: checkpoints intact: $ck"
    else fail "$name: checkpoints missing or damaged: $ck"; fi
    # A kill between two ranks' checkpoint writes leaves different epochs: then all ranks start over.
    ck_epoch[$name]=$(grep -o 'epoch [0-9]*' <<<"$ck" | awk '{print $2}' | sort -un | awk 'END { print (NR == 1 ? $1 : "mixed") }')
}
kill_host() {   # kill_host NAMESPACE: kill -9 of its ligand processes
    local pids
    pids=$(host_ligand_pids "$1" | tr '\n' ' ')
    [[ -n "${pids// /}" ]] || return 1
    # shellcheck disable=SC2086
    kill -9 $pids && echo "kill -9 of $1's ligand pid(s) ${pids% }"
}
kill_host2() { kill_host "$h2"; }
kill_host4() { kill_host "$h4"; }
link_down_host2() { ip link set "$link2" down && echo "$h2's link $link2 down"; }
# settle: after a fault, what the killed job left (processes, orphaned TCP connections, session
# dirs) must be gone and the hosts must reach each other before the rerun, or the rerun can hang.
settle() {
    local msg
    if msg=$(bash launch/netns-hosts.sh settle "$run" 2>&1); then ok "$1: $msg"
    else fail "$1: the hosts did not settle: $msg"; fi
}

rerun() {   # rerun NAME [NP]: the same command again across the (healthy) hosts must resume and match
    local name="$1" np="${2:-2}"
    if ! run_hosts "$np" node "$tmp/$name-rerun.out" "${long[@]}" --out "$tmp/$name"; then
        fail "$name rerun failed"; tail "$tmp/$name-rerun.out" | sed 's/^/    | /'
    elif grep -q "resumed Portland from the checkpoint at epoch ${ck_epoch[$name]:-?}\$" "$tmp/$name-rerun.out"; then
        ok "$name rerun: $(grep -m1 -o 'resumed Portland from the checkpoint at epoch [0-9]*' "$tmp/$name-rerun.out")"
    elif [[ "${ck_epoch[$name]:-}" == mixed ]] && ! grep -q "resumed Portland" "$tmp/$name-rerun.out"; then
        ok "$name rerun: the ranks' checkpoints were at different epochs, so it started over (as designed)"
    else fail "$name rerun did not resume from the checkpoint left at epoch ${ck_epoch[$name]:-?}"; tail "$tmp/$name-rerun.out" | sed 's/^/    | /'; fi
    if [[ -s "$tmp/$reference/neulig-global.safetensors" ]] && cmp -s "$tmp/$reference/neulig-global.safetensors" "$tmp/$name/neulig-global.safetensors"; then
        ok "$name rerun: fused file equals the undisturbed run's"
    else fail "$name rerun: fused file differs from the undisturbed run's"; fi
}

fault killed kill_host2
settle killed
rerun killed

fault linkdown link_down_host2
ip link set "$link2" up || fail "linkdown: could not bring $link2 up again"
settle linkdown
rerun linkdown

# Four hosts, one rank each: host 4's rank killed midway; the rerun on four hosts matches an undisturbed -np 2
# run of the same command (fewer epochs: four ranks on this machine's two cores step slowly).
long=(merge --method neulig --suite tiny-tasks --loss sup --epochs 600 --calibration-samples 300 --checkpoint-every 100 --quiet --no-baselines)
reference=full4
if run_hosts 2 node "$tmp/full4.out" "${long[@]}" --out "$tmp/full4" && [[ -s "$tmp/full4/neulig-global.safetensors" ]]; then
    ok "undisturbed 600-epoch run across 2 hosts ($(grep -o 'portland [0-9.]*' "$tmp/full4.out" | head -1) s)"
else fail "undisturbed 600-epoch run across 2 hosts"; tail "$tmp/full4.out" | sed 's/^/    | /'; fi
fault killed4 kill_host4 4
settle killed4
rerun killed4 4

echo "multihost tests: $passed passed, $failed failed"
(( failed == 0 ))
