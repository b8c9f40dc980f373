#!/usr/bin/env bash
# Test "hosts" on one machine: network namespaces joined by veth pairs to a bridge, so mpirun
# sees separate nodes that only reach each other over TCP. Every set of hosts belongs to a run K
# (0..254) with its own names and subnet, so two runs on one machine never share anything.
#
#   bash launch/netns-hosts.sh up N [--run K|auto] [--hostfile FILE]
#        creates lgKh1..lgKhN (10.213.K.11 .. 10.213.K.(10+N)); K defaults to 0 (hostfiles/netns);
#        auto claims a free K (from the caller's pid on); prints K; FILE gets an OpenMPI hostfile
#   bash launch/netns-hosts.sh down [K|all]   removes run K's hosts, their processes and bridge
#                                             (default 0; all: every run's, only when none is in use)
#   bash launch/netns-hosts.sh settle K       after a fault: ends what is left of the old job in
#                                             run K (processes, sockets, session dirs) and waits
#                                             until every host reaches every other again
#   bash launch/netns-hosts.sh status         lists the hosts and their addresses
#   bash launch/netns-hosts.sh check          exit 0 if this machine can create them, else 77 and why
#
# Layout of run K: bridge lgKbr (10.213.K.1/24) in the root namespace; host i is namespace lgKhI
# with eth0 = 10.213.K.(10+i)/24 and lo up; its pair end in the root namespace is lgKvI (in the
# bridge). Creating the bridge claims K: the kernel refuses a second link of that name, atomically.
# `down` is idempotent and also cleans up after a crashed run. Needs root and iproute2.
set -uo pipefail

LGH_MAX=20

die()  { printf 'netns-hosts: error: %s\n' "$*" >&2; exit 1; }
skip() { printf 'netns-hosts: unavailable: %s\n' "$*" >&2; exit 77; }

bridge() { echo "lg$1br"; }
host_ns() { echo "lg$1h$2"; }
root_end() { echo "lg$1v$2"; }
net() { echo "10.213.$1"; }

# Exit 77 (the conventional "skipped" code) with the reason when namespaces cannot be made here.
check() {
    (( EUID == 0 )) || skip "network namespaces need root (running as uid $EUID)"
    command -v ip >/dev/null 2>&1 || skip "the 'ip' command (iproute2) is not installed"
    ip netns list >/dev/null 2>&1 || skip "'ip netns' does not work here: $(ip netns list 2>&1 | head -1)"
    local probe="lghprobe$$"
    if ! err=$(ip netns add "$probe" 2>&1); then skip "cannot create a network namespace: $err"; fi
    ip netns del "$probe" 2>/dev/null
    if ! err=$(ip link add "lgp$$" type veth peer name "lgq$$" 2>&1); then skip "cannot create a veth pair: $err"; fi
    ip link del "lgp$$" 2>/dev/null
    if ! err=$(ip link add "lgb$$" type bridge 2>&1); then skip "cannot create a bridge: $err"; fi
    ip link del "lgb$$" 2>/dev/null
    # launch/netns-rsh gives every host its own hostname in a UTS namespace.
    if ! err=$(unshare --uts true 2>&1); then skip "cannot create a UTS namespace (unshare --uts): $err"; fi
    return 0
}

# A TCP connect from namespace NS to ADDR port 9: "refused" proves the path works (no ping needed).
reachable() {
    local out
    out=$(ip netns exec "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$2/9" 2>&1) && return 0
    [[ "$out" == *"refused"* ]]
}

runs() { ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | sed -nE 's/^lg([0-9]+)br$/\1/p' | sort -n; }
hosts_of() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^lg$1h[0-9]+\$" | sort -V; }

# Ends every process of namespace NS and waits until the kernel has reaped them all, so nothing of
# a killed job (an orted, a rank) still holds a socket or writes a file when the next job starts.
end_processes() {
    local ns="$1" pids tries=0
    while pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ') && [[ -n "${pids// /}" ]]; do
        (( tries < 50 )) || { printf 'netns-hosts: warning: processes %s of %s do not end\n' "$pids" "$ns" >&2; return 1; }
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null
        tries=$((tries + 1))
        sleep 0.1
    done
    return 0
}

down_run() {
    local k="$1" ns i
    for ns in $(hosts_of "$k"); do
        # Processes left in a host (a crashed test) keep it alive; they are ours, end them by pid.
        end_processes "$ns"
        rm -rf "${TMPDIR:-/tmp}/ompi.$ns".*
        ip netns del "$ns" 2>/dev/null || printf 'netns-hosts: warning: could not delete namespace %s\n' "$ns" >&2
    done
    for i in $(seq 1 "$LGH_MAX"); do
        ip link show "$(root_end "$k" "$i")" >/dev/null 2>&1 && ip link del "$(root_end "$k" "$i")" 2>/dev/null
    done
    ip link show "$(bridge "$k")" >/dev/null 2>&1 && ip link del "$(bridge "$k")" 2>/dev/null
    return 0
}

down() {
    local which="${1:-0}" k
    if [[ "$which" == all ]]; then
        for k in $(runs); do down_run "$k"; done
        # Namespaces whose bridge is already gone (a run killed halfway through `down`).
        for k in $(ip netns list 2>/dev/null | awk '{print $1}' | sed -nE 's/^lg([0-9]+)h[0-9]+$/\1/p' | sort -un); do down_run "$k"; done
        return 0
    fi
    [[ "$which" =~ ^[0-9]+$ ]] && (( which <= 254 )) || die "down needs a run number 0..254 or 'all', got '$which'"
    down_run "$which"
}

# Claims run K: creates its bridge unless that name or its subnet is taken. Returns 1 if taken.
claim() {
    local k="$1" br
    br=$(bridge "$k")
    ip -o -4 addr show 2>/dev/null | awk '{print $4}' | grep -q "^$(net "$k" | sed 's/\./\\./g')\." && return 1
    ip link add "$br" type bridge 2>/dev/null || return 1
    if ! ip addr add "$(net "$k").1/24" dev "$br"; then ip link del "$br"; return 1; fi
    return 0
}

up() {
    local n="" k=0 hostfile="" auto=0
    while (( $# > 0 )); do
        case "$1" in
            --run) [[ "${2:-}" == auto ]] && auto=1 || k="${2:-}"; shift 2 ;;
            --hostfile) hostfile="${2:-}"; shift 2 ;;
            *) n="$1"; shift ;;
        esac
    done
    [[ "$n" =~ ^[0-9]+$ ]] && (( n >= 1 && n <= LGH_MAX )) || die "up needs a number of hosts between 1 and $LGH_MAX, got '${n}'"
    check
    if (( auto )); then
        # Start from the caller's pid so concurrent runs rarely even try the same K; 0 stays manual.
        local start=$(( PPID % 254 + 1 )) tries
        for tries in $(seq 0 253); do
            k=$(( (start + tries - 1) % 254 + 1 ))
            claim "$k" && break
            k=""
        done
        [[ -n "$k" ]] || die "no free run number 1..254 (bash launch/netns-hosts.sh down all removes stale ones)"
    else
        [[ "$k" =~ ^[0-9]+$ ]] && (( k <= 254 )) || die "--run needs 0..254 or auto, got '$k'"
        down_run "$k"
        claim "$k" || die "cannot create bridge $(bridge "$k") with $(net "$k").1/24 (subnet in use?)"
    fi
    # From here on a failure or an interrupt removes what this call created.
    trap 'down_run "$k"' EXIT
    trap 'exit 130' INT TERM
    local br i ns v
    br=$(bridge "$k")
    ip link set "$br" up || die "cannot bring bridge $br up"
    for i in $(seq 1 "$n"); do
        ns=$(host_ns "$k" "$i"); v=$(root_end "$k" "$i")
        ip netns add "$ns" || die "cannot create namespace $ns"
        ip link add "$v" type veth peer name "lg${k}x$i" || die "cannot create veth pair for $ns"
        ip link set "lg${k}x$i" netns "$ns" || die "cannot move lg${k}x$i into $ns"
        ip link set "$v" master "$br" || die "cannot attach $v to $br"
        ip link set "$v" up || die "cannot bring $v up"
        ip -n "$ns" link set "lg${k}x$i" name eth0 || die "cannot rename lg${k}x$i in $ns"
        ip -n "$ns" addr add "$(net "$k").$((10 + i))/24" dev eth0 || die "cannot address eth0 in $ns"
        ip -n "$ns" link set eth0 up || die "cannot bring eth0 up in $ns"
        ip -n "$ns" link set lo up || die "cannot bring lo up in $ns"
    done
    # Fail now, not inside mpirun, if a host cannot reach the bridge.
    for i in $(seq 1 "$n"); do
        wait_reachable "$k" "$(host_ns "$k" "$i")" || die "host $(host_ns "$k" "$i") cannot reach $(net "$k").1 over $br"
    done
    if [[ -n "$hostfile" ]]; then
        {
            echo "# netns test hosts of run $k (launch/netns-hosts.sh up $n --run $k)"
            for i in $(seq 1 "$n"); do echo "$(net "$k").$((10 + i)) slots=2"; done
        } >"$hostfile" || die "cannot write $hostfile"
    fi
    trap - EXIT
    printf 'netns-hosts: %d host(s) up: %s\n' "$n" "$(for i in $(seq 1 "$n"); do printf '%s=%s.%d ' "$(host_ns "$k" "$i")" "$(net "$k")" $((10 + i)); done)" >&2
    echo "$k"
}

# wait_reachable K NS: until host NS reaches the bridge address both ways (at most about 10 s).
wait_reachable() {
    local k="$1" ns="$2" tries=0
    until reachable "$ns" "$(net "$k").1"; do
        tries=$((tries + 1))
        (( tries < 30 )) || return 1
        sleep 0.3
    done
}

# settle K: after a fault (a host's processes killed, its link down and up again), returns once
# run K is as clean as a fresh one, or fails (within about 15 s) saying what is left:
#  - no process left in any host (ended by pid, and reaped: nothing of the old job still runs);
#  - no TCP socket of the old job left, in the hosts or in the root namespace on the run's subnet.
#    A job killed while its link was down leaves its connections orphaned in FIN-WAIT with data
#    unacknowledged and retransmit timers backed off to seconds; they hold the btl's port and,
#    once the link is back, fire into the next job's connections (an Open MPI btl/tcp connect that
#    then fails is never retried: the rerun hangs in its first collective). ss -K destroys them.
#  - every host reaches the bridge and every other host again (the link forwards both ways);
#  - the hosts' Open MPI session directories (left by a killed orted) are gone.
# Prints one line saying what it had to clean.
settle() {
    local k="${1:-}" ns other i cleaned=() pids left
    [[ "$k" =~ ^[0-9]+$ ]] || die "settle needs a run number, got '$k'"
    local hosts=($(hosts_of "$k"))
    (( ${#hosts[@]} > 0 )) || die "run $k has no hosts"
    for ns in "${hosts[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null | wc -l)
        (( pids > 0 )) && cleaned+=("$pids process(es) in $ns")
        end_processes "$ns" || return 1
    done
    for ns in "${hosts[@]}" ""; do
        local in=() filter=()
        [[ -n "$ns" ]] && in=(ip netns exec "$ns") || filter=(dst "$(net "$k").0/24")
        # TIME-WAIT ones only remember a closed connection; they send nothing and hold no port.
        for i in $(seq 1 50); do
            left=$("${in[@]}" ss -tanH state all exclude listening exclude time-wait "${filter[@]}" 2>/dev/null | wc -l)
            (( left == 0 )) && break
            (( i == 1 )) && cleaned+=("$left socket(s) in ${ns:-the root namespace}")
            "${in[@]}" ss -K -tanH state all exclude listening exclude time-wait "${filter[@]}" >/dev/null 2>&1
            sleep 0.1
        done
        (( left == 0 )) || { printf 'netns-hosts: %d TCP socket(s) of run %s do not go away in %s\n' "$left" "$k" "${ns:-the root namespace}" >&2; return 1; }
    done
    for ns in "${hosts[@]}"; do
        wait_reachable "$k" "$ns" || { printf 'netns-hosts: %s does not reach %s.1\n' "$ns" "$(net "$k")" >&2; return 1; }
        for other in "${hosts[@]}"; do
            [[ "$other" == "$ns" ]] && continue
            local addr tries=0
            addr=$(ip -n "$other" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
            until reachable "$ns" "$addr"; do
                tries=$((tries + 1))
                (( tries < 30 )) || { printf 'netns-hosts: %s does not reach %s (%s)\n' "$ns" "$other" "$addr" >&2; return 1; }
                sleep 0.3
            done
        done
        compgen -G "${TMPDIR:-/tmp}/ompi.$ns.*" >/dev/null && { cleaned+=("session dir of $ns"); rm -rf "${TMPDIR:-/tmp}/ompi.$ns".*; }
    done
    printf 'run %s settled: %s\n' "$k" "$( (( ${#cleaned[@]} )) && { IFS=,; echo "cleaned ${cleaned[*]}"; } || echo "nothing to clean")"
}

status() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^lg[0-9]+h[0-9]+$' | sort -V); do
        printf '%s %s\n' "$ns" "$(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}' | head -1)"
    done
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down "${2:-0}" ;;
    settle) settle "${2:-}" ;;
    status) status ;;
    check) check ;;
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
