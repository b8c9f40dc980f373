# shellcheck shell=bash
# Shared helpers for the launch scripts; source it, do not run it.
#   LIGAND_ROOT            the repository root (every script cd's there)
#   ligand_bin             builds `ligand` in release once, prints its path
#   ligand_validate_hostfile FILE   checks the syntax (and host names) of an OpenMPI hostfile
#   ligand_mpirun [mpirun options...] -- PROGRAM [args...]
#                          mpirun with the options this project always needs
#   ligand_pin_blas_kernel pins OpenBLAS's x86-64 kernel so seeded figures match across CPUs

LIGAND_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LIGAND_ROOT
# The scripts cd to the root: a relative LIGAND_BIN means relative to where the user was.
if [[ -n "${LIGAND_BIN:-}" && "$LIGAND_BIN" != /* && -e "$LIGAND_BIN" ]]; then
    LIGAND_BIN="$(pwd)/$LIGAND_BIN"
fi

# mpirun refuses to start as root without both of these (CI and containers run as root).
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

ligand_log() { printf '%s\n' "$*" >&2; }
ligand_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Cores of this node (ranks share them; threads per rank are derived from it).
ligand_cores() {
    local n
    n="$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
    [[ "$n" =~ ^[0-9]+$ ]] && (( n > 0 )) || n=1
    echo "$n"
}

# OPENBLAS_NUM_THREADS for RANKS ranks on one node: max(1, floor(cores / ranks)).
ligand_threads_per_rank() {
    local ranks="${1:-1}" cores
    cores="$(ligand_cores)"
    if (( ranks < 1 )); then ranks=1; fi
    local t=$(( cores / ranks ))
    if (( t < 1 )); then t=1; fi
    echo "$t"
}

# OpenBLAS picks its GEMM kernel per CPU (Haswell, SkylakeX, Zen, ...) and each kernel rounds Float32
# sums in its own order, so a seeded training run differs in the last bits from one CPU family to
# the next and the demo's figures drift by tenths of a point. Pinning the AVX2 (Haswell) kernel,
# which every x86-64 CPU since 2013 runs, makes them the same everywhere; the user's own
# OPENBLAS_CORETYPE wins. Call it directly, not in $(...): it exports into the calling shell, and
# OPENBLAS_CORETYPE then names the kernel in force (unset when not pinned).
ligand_pin_blas_kernel() {
    if [[ -z "${OPENBLAS_CORETYPE:-}" && "$(uname -m)" == x86_64 ]] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
        export OPENBLAS_CORETYPE=Haswell
    fi
}

# Builds release once per shell (and only rebuilds what changed), prints the binary's path.
LIGAND_BUILT=""
ligand_bin() {
    if [[ -n "${LIGAND_BIN:-}" ]]; then
        [[ -x "$LIGAND_BIN" ]] || ligand_die "LIGAND_BIN=$LIGAND_BIN is not an executable file"
        echo "$LIGAND_BIN"
        return
    fi
    if [[ -z "$LIGAND_BUILT" ]]; then
        ( cd "$LIGAND_ROOT" && swift build -c release >&2 ) || ligand_die "swift build -c release failed"
        LIGAND_BUILT=1
    fi
    echo "$LIGAND_ROOT/.build/release/ligand"
}

# Checks an OpenMPI hostfile: every non-comment line is `host [slots=N] [max_slots=N]`.
# Set LIGAND_SKIP_RESOLVE=1 to skip the name-resolution check (e.g. names only the
# cluster's nodes can resolve). On success prints "NODES MAX_SLOTS TOTAL_SLOTS"
# (MAX_SLOTS is 0 if no line gives slots=; a line without slots= counts as one slot in TOTAL_SLOTS).
ligand_validate_hostfile() {
    local file="$1"
    [[ -n "$file" ]] || { ligand_log "error: no hostfile given"; return 1; }
    [[ -e "$file" ]] || { ligand_log "error: hostfile $file does not exist"; return 1; }
    [[ -f "$file" && -r "$file" ]] || { ligand_log "error: hostfile $file is not a readable file"; return 1; }
    local lineno=0 nodes=0 maxslots=0 total=0 slots line host word key value bad=0 words
    while IFS= read -r line || [[ -n "$line" ]]; do
        lineno=$((lineno + 1))
        line="${line%%#*}"                      # comments run to the end of the line
        line="${line//$'\r'/}"
        read -r -a words <<<"$line"
        if (( ${#words[@]} == 0 )); then continue; fi
        host="${words[0]}"
        slots=1
        if ! [[ "$host" =~ ^([A-Za-z0-9._-]+@)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
            ligand_log "error: $file line $lineno: '$host' is not a host name (expected: host [slots=N] [max_slots=N])"
            bad=1; continue
        fi
        for word in "${words[@]:1}"; do
            key="${word%%=*}"; value="${word#*=}"
            if [[ "$word" != *=* ]] || ! [[ "$key" =~ ^(slots|max_slots|max-slots)$ ]]; then
                ligand_log "error: $file line $lineno: unknown field '$word' (expected: host [slots=N] [max_slots=N])"
                bad=1; continue
            fi
            if ! [[ "$value" =~ ^[0-9]+$ ]] || (( 10#$value < 1 )); then
                ligand_log "error: $file line $lineno: $key must be a positive integer, got '$value'"
                bad=1; continue
            fi
            if [[ "$key" == slots ]]; then
                slots=$((10#$value))
                if (( slots > maxslots )); then maxslots=$slots; fi
            fi
        done
        if [[ "${LIGAND_SKIP_RESOLVE:-0}" != 1 ]]; then
            local name="${host#*@}"
            if ! getent hosts "$name" >/dev/null 2>&1; then
                ligand_log "error: $file line $lineno: host '$name' does not resolve (check the name or /etc/hosts; LIGAND_SKIP_RESOLVE=1 skips this check)"
                bad=1; continue
            fi
        fi
        nodes=$((nodes + 1))
        total=$((total + slots))
    done <"$file"
    (( bad == 0 )) || return 1
    (( nodes > 0 )) || { ligand_log "error: hostfile $file names no host (every line is empty or a comment)"; return 1; }
    echo "$nodes $maxslots $total"
}

# mpirun with this project's options. Recognises -np/-n N and --hostfile FILE among the
# options (to size the per-rank thread count); everything else is forwarded unchanged.
ligand_mpirun() {
    local np=1 hostfile="" args=("$@") i=0
    while (( i < ${#args[@]} )); do
        case "${args[i]}" in
            -np|-n|--np|-c) np="${args[i+1]:-1}"; i=$((i + 2)); continue ;;
            --hostfile|-hostfile|--machinefile|-machinefile) hostfile="${args[i+1]:-}"; i=$((i + 2)); continue ;;
            --) break ;;
        esac
        i=$((i + 1))
    done
    command -v mpirun >/dev/null 2>&1 || ligand_die "mpirun not found: run 'bash launch/setup.sh' (installs openmpi-bin)"
    local per_node="$np"
    if [[ -n "$hostfile" ]]; then
        local info nodes maxslots total
        info="$(ligand_validate_hostfile "$hostfile")" || ligand_die "hostfile $hostfile is not usable (see above)"
        read -r nodes maxslots total <<<"$info"
        # mpirun fills a node's slots before moving on, so a node holds at most min(np, slots) ranks.
        if (( maxslots > 0 && maxslots < np )); then per_node="$maxslots"; fi
    fi
    local threads="${OPENBLAS_NUM_THREADS:-$(ligand_threads_per_rank "$per_node")}"
    local mpiargs=(--allow-run-as-root --oversubscribe --bind-to none -x "OPENBLAS_NUM_THREADS=$threads")
    # Forward the project's own settings to every rank when the user set them.
    if [[ -n "${LIGAND_FASHION_MNIST:-}" ]]; then mpiargs+=(-x LIGAND_FASHION_MNIST); fi
    if [[ -n "${OPENBLAS_CORETYPE:-}" ]]; then mpiargs+=(-x OPENBLAS_CORETYPE); fi
    (( i < ${#args[@]} )) || ligand_die "ligand_mpirun: put -- between the mpirun options and the program"
    mpirun "${mpiargs[@]}" "${args[@]:0:i}" "${args[@]:i+1}"
}
