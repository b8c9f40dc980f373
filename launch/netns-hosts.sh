#!/usr/bin/env bash
# Test "hosts" on one machine: network namespaces joined by veth pairs to a bridge, so mpirun
# sees separate nodes that only reach each other over TCP (hostfiles/netns lists them).
#
#   bash launch/netns-hosts.sh up N     creates lgh1..lghN (10.213.0.11 .. 10.213.0.(10+N))
#   bash launch/netns-hosts.sh down     removes every lgh* namespace, its processes and the bridge
#   bash launch/netns-hosts.sh status   lists the hosts and their addresses
#   bash launch/netns-hosts.sh check    exit 0 if this machine can create them, else 77 and why
#
# Layout: bridge lgbr0 (10.213.0.1/24) in the root namespace; host i is namespace lghI with
# eth0 = 10.213.0.(10+i)/24 and lo up; its pair end in the root namespace is lgvI (in the bridge).
# `down` is idempotent and also cleans up after a crashed run. Needs root and iproute2.
set -uo pipefail

LGH_BRIDGE=lgbr0
LGH_NET=10.213.0
LGH_MAX=20

die()  { printf 'netns-hosts: error: %s\n' "$*" >&2; exit 1; }
skip() { printf 'netns-hosts: unavailable: %s\n' "$*" >&2; exit 77; }

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

hosts() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^lgh[0-9]+$' | sort -V; }

down() {
    local ns pids
    for ns in $(hosts); do
        # Processes left in a host (a crashed test) keep it alive; they are ours, end them by pid.
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        if [[ -n "${pids// /}" ]]; then
            # shellcheck disable=SC2086
            kill -9 $pids 2>/dev/null
            sleep 0.2
        fi
        ip netns del "$ns" 2>/dev/null || printf 'netns-hosts: warning: could not delete namespace %s\n' "$ns" >&2
    done
    local link
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^lgv[0-9]+$'); do
        ip link del "$link" 2>/dev/null
    done
    ip link show "$LGH_BRIDGE" >/dev/null 2>&1 && ip link del "$LGH_BRIDGE" 2>/dev/null
    return 0
}

up() {
    local n="${1:-}"
    [[ "$n" =~ ^[0-9]+$ ]] && (( n >= 1 && n <= LGH_MAX )) || die "up needs a number of hosts between 1 and $LGH_MAX, got '${n}'"
    check
    down
    ip link add "$LGH_BRIDGE" type bridge || die "cannot create bridge $LGH_BRIDGE"
    ip addr add "$LGH_NET.1/24" dev "$LGH_BRIDGE" || die "cannot address bridge $LGH_BRIDGE"
    ip link set "$LGH_BRIDGE" up || die "cannot bring bridge $LGH_BRIDGE up"
    local i ns
    for i in $(seq 1 "$n"); do
        ns="lgh$i"
        ip netns add "$ns" || die "cannot create namespace $ns"
        ip link add "lgv$i" type veth peer name "lgx$i" || die "cannot create veth pair for $ns"
        ip link set "lgx$i" netns "$ns" || die "cannot move lgx$i into $ns"
        ip link set "lgv$i" master "$LGH_BRIDGE" || die "cannot attach lgv$i to $LGH_BRIDGE"
        ip link set "lgv$i" up || die "cannot bring lgv$i up"
        ip -n "$ns" link set "lgx$i" name eth0 || die "cannot rename lgx$i in $ns"
        ip -n "$ns" addr add "$LGH_NET.$((10 + i))/24" dev eth0 || die "cannot address eth0 in $ns"
        ip -n "$ns" link set eth0 up || die "cannot bring eth0 up in $ns"
        ip -n "$ns" link set lo up || die "cannot bring lo up in $ns"
    done
    # Fail now, not inside mpirun, if a host cannot reach the bridge.
    for i in $(seq 1 "$n"); do
        local tries=0
        until reachable "lgh$i" "$LGH_NET.1"; do
            tries=$((tries + 1))
            (( tries < 10 )) || die "host lgh$i ($LGH_NET.$((10 + i))) cannot reach $LGH_NET.1 over $LGH_BRIDGE"
            sleep 0.3
        done
    done
    printf 'netns-hosts: %d host(s) up: %s\n' "$n" "$(for i in $(seq 1 "$n"); do printf 'lgh%d=%s.%d ' "$i" "$LGH_NET" $((10 + i)); done)" >&2
}

status() {
    local ns
    for ns in $(hosts); do
        printf '%s %s\n' "$ns" "$(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}' | head -1)"
    done
}

case "${1:-}" in
    up) up "${2:-}" ;;
    down) down ;;
    status) status ;;
    check) check ;;
    *) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
