#!/usr/bin/env bash
# The K = 64 merges of docs/scale.md "Four hosts" across four network-namespace hosts, one rank per host, against
# the same merges on one host: every fused file must be bitwise identical (needs root and iproute2, as
# launch/multihost-tests.sh; the 64-model suite of recipes/seeds-64.yaml must be built under $LIGAND_ZOO_CACHE).
#   LIGAND_ZOO_CACHE=... bash benchmarks/scale-4hosts.sh [OUT_DIR]
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../launch/common.sh"
cd "$LIGAND_ROOT" || exit 1
bin="${LIGAND_BIN:-$LIGAND_ROOT/.build/release/ligand}"
out="${1:-$(mktemp -d /tmp/ligand-scale-4hosts.XXXXXX)}"
mkdir -p "$out"
export LIGAND_SKIP_RESOLVE=1
reason=$(bash launch/netns-hosts.sh check 2>&1) || { echo "SKIPPED: ${reason#netns-hosts: unavailable: }"; exit 77; }
run=$(bash launch/netns-hosts.sh up 4 --run auto --hostfile "$out/hosts") || { echo "netns-hosts.sh up 4 failed"; exit 1; }
trap 'bash launch/netns-hosts.sh down "$run"' EXIT
net="10.213.$run"
mca=(--hostfile "$out/hosts" --mca plm_rsh_agent "$LIGAND_ROOT/launch/netns-rsh" --mca plm_rsh_no_tree_spawn 1
     --mca oob_tcp_if_include "$net.0/24" --mca btl_tcp_if_include "$net.0/24" --mca btl tcp,self --mca mpi_yield_when_idle 1)
status=0
for m in "permute" "cca --calibration-samples 2000 --gammas 1e-2"; do
    name=${m%% *}
    for where in single 4hosts; do
        start=$(date +%s.%N)
        if [[ $where == single ]]; then
            ligand_mpirun -np 4 -- "$bin" merge --method $m --suite seeds-mlp-64 --out "$out/$name-$where" --quiet >"$out/$name-$where.log" 2>&1
        else
            ligand_mpirun -np 4 --map-by node "${mca[@]}" -x LIGAND_ZOO_CACHE -- "$bin" merge --method $m --suite seeds-mlp-64 \
                --out "$out/$name-$where" --quiet >"$out/$name-$where.log" 2>&1 </dev/null
        fi || { echo "$name ($where) failed: $out/$name-$where.log"; status=1; continue; }
        printf "%s K = 64, -np 4, %s: %.1f s wall, %s\n" "$name" "$where" "$(echo "$(date +%s.%N) - $start" | bc)" \
            "$(grep -m1 "fused: $name" "$out/$name-$where.log" | tr -s ' ')"
    done
    if cmp -s "$out/$name-single/$name.safetensors" "$out/$name-4hosts/$name.safetensors"; then
        echo "$name: the fused file across 4 hosts is bitwise identical to the single-host one"
    else echo "$name: the fused files DIFFER"; status=1; fi
done
exit $status
