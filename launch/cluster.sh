#!/usr/bin/env bash
# Runs ligand across the nodes of an OpenMPI hostfile.
#
#   bash launch/cluster.sh HOSTFILE [-np N] [extra mpirun options...] [-- ligand args...]
#
# -np defaults to the hostfile's total slots (a line without slots= counts as 1); the ligand
# arguments default to `info`. Extra mpirun options (e.g. --mca btl_tcp_if_include eth0) are
# forwarded as given. See hostfiles/example-cluster for what every node needs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT"

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

(( $# >= 1 )) || usage
case "$1" in -h|--help) usage ;; esac
hostfile="$1"; shift

info="$(ligand_validate_hostfile "$hostfile")" || ligand_die "hostfile $hostfile is not usable (see above)"
read -r nodes _ total <<<"$info"

np=""
mpi_opts=()
while (( $# > 0 )); do
    case "$1" in
        --) shift; break ;;
        -np|-n|--np)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -ge 1 ]] || ligand_die "$1 needs a positive number of ranks"
            np="$2"; shift 2 ;;
        --hostfile|-hostfile|--machinefile|-machinefile)
            ligand_die "give the hostfile as the first argument, not with $1" ;;
        *) mpi_opts+=("$1"); shift ;;
    esac
done
ligand_args=("$@")
(( ${#ligand_args[@]} > 0 )) || ligand_args=(info)
np="${np:-$total}"

bin="$(ligand_bin)"
ligand_log "cluster: $np rank(s) over $nodes node(s) from $hostfile: $bin ${ligand_args[*]}"
ligand_mpirun -np "$np" --hostfile "$hostfile" "${mpi_opts[@]}" -- "$bin" "${ligand_args[@]}"
