#!/usr/bin/env bash
# Seesaw + DeepSpeed example on 2 CPU ranks (gloo). Extra arguments go to the script, e.g.
#   bash launch/run_example.sh --max_steps 20
#   CONFIG=ds_configs/example_cosine.json bash launch/run_example.sh     # the baseline
set -euo pipefail
cd "$(dirname "$0")/.."
export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec deepspeed --num_gpus "${NUM_RANKS:-2}" --master_port "${MASTER_PORT:-29512}" \
    launch/train_example.py --deepspeed_config "${CONFIG:-ds_configs/tiny_seesaw.json}" "$@"
