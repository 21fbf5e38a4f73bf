#!/usr/bin/env bash
# One paper run on several nodes with the DeepSpeed launcher (pdsh over passwordless ssh):
#   HOSTFILE=hosts C4_JSONL=/data/c4 T5_SPM=/models/t5/spiece.model \
#       launch/multi_node.sh 600m 1024 seesaw [--resume]
# HOSTFILE is DeepSpeed's MPI-style hostfile, one "node-0 slots=8" per line. MASTER_ADDR
# defaults to its first host, MASTER_PORT to 29500; NNODES (default: every host) and NGPUS
# (default: every slot) narrow it down. Run from a node that can ssh to all the others; the
# repo, corpus, tokenizer, SEESAW_RESULTS and SEESAW_DATA_DIR must be at the same path on every
# node (shared filesystem). Data is prepared here, once, before any rank starts.
# The shipped configs need a data-parallel size dividing 8 (see launch/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. launch/_common.sh
seesaw_pick "$@"
shift 3
[ -n "${HOSTFILE:-}" ] && [ -f "$HOSTFILE" ] \
    || seesaw_die "set HOSTFILE to a DeepSpeed hostfile ('node-0 slots=8' per line)"
MASTER_ADDR="${MASTER_ADDR:-$(awk '!/^[[:space:]]*(#|$)/ {print $1; exit}' "$HOSTFILE")}"
DP="$(awk -v n="${NNODES:-0}" -v g="${NGPUS:-0}" '
    /^[[:space:]]*(#|$)/ {next}
    n > 0 && ++k > n {exit}
    {s = 0; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) s = substr($i, 7) + 0
     if (g > 0 && s > g) s = g; t += s}
    END {print t + 0}' "$HOSTFILE")"
[ "$DP" -gt 0 ] || seesaw_die "HOSTFILE $HOSTFILE lists no 'slots=N' hosts"
seesaw_resolve "$DP" prepare
launcher=(--hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}")
[ -z "${NNODES:-}" ] || launcher+=(--num_nodes "$NNODES")
[ -z "${NGPUS:-}" ] || launcher+=(--num_gpus "$NGPUS")
exec deepspeed "${launcher[@]}" --module seesaw_ds.train \
    --run-config "$RUN_YAML" --deepspeed_config "$DS_CONFIG" --output-dir "$RUN_DIR" "$@"
