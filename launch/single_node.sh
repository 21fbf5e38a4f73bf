#!/usr/bin/env bash
# One paper run on one node with the DeepSpeed launcher:
#   C4_JSONL=/data/c4 T5_SPM=/models/t5/spiece.model \
#       launch/single_node.sh 150m 256 seesaw [--resume]
# uses ds_configs/150m_b256_seesaw.json and launch/run_configs/paper_150m.yaml (resolved into
# results/paper/150m_b256_seesaw/launch/run_config.yaml) and writes results/paper/150m_b256_seesaw/.
# Arguments after the three go to seesaw_ds.train. Env: NGPUS (8), MASTER_PORT (29500),
# SEESAW_DATA (prepare: tokenize once here, before any rank starts), see launch/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. launch/_common.sh
seesaw_pick "$@"
shift 3
NGPUS="${NGPUS:-8}"
seesaw_resolve "$NGPUS" prepare
exec deepspeed --num_gpus "$NGPUS" --master_port "${MASTER_PORT:-29500}" --module seesaw_ds.train \
    --run-config "$RUN_YAML" --deepspeed_config "$DS_CONFIG" --output-dir "$RUN_DIR" "$@"
