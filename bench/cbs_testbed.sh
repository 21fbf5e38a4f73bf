#!/usr/bin/env bash
# The critical batch of the frontier testbed (docs/results.md), measured by branching
# (`seesaw-ds cbs`, docs/cbs.md): the micro GPT (0.10M parameters outside the embeddings),
# BPE 2048 on the stdlib corpus, seq 128, cosine at a constant batch 4 (peak 3e-3, 10%
# warmup, to 0.1x) over the testbed's 2M tokens with a checkpoint every 62,500 tokens;
# from 6 of them, branches of 131,072 tokens at batches 4..128, tolerance 1%.
# About 15 minutes on one CPU core; resumable (rerun to continue).
#   bash bench/cbs_testbed.sh     # -> results/cbs_testbed/cbs/cbs.{json,png}
#   RECORD=1 bash bench/cbs_testbed.sh   # also copies them to bench/records/cbs_testbed.*
#   SEED=101 RECORD=1 bash bench/cbs_testbed.sh   # a repeat: another initialisation and data
#       order (data seed 1234 + SEED) -> results/cbs_testbed_s101, bench/records/cbs_testbed_s101.*
set -euo pipefail
SEED=${SEED:-100}
SUFFIX=$([ "$SEED" = 100 ] || echo "_s$SEED")
OUT=${OUT:-results/cbs_testbed$SUFFIX}
export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PREPARED=${PREPARED:-results/data/stdlib}
[ -d "$PREPARED" ] || seesaw-ds prepare --out "$PREPARED" --vocab-size 2048
mkdir -p "$OUT"
cat > "$OUT/run.json" <<JSON
{"model": {"shape": "micro"},
 "data": {"prepared_dir": "$PREPARED", "vocab_size": 2048},
 "eval": {"interval_tokens": 500000, "batches": 16, "batch_size": 32},
 "checkpoint": {"interval_tokens": 62500}, "output_dir": "$OUT/base", "seed": $SEED}
JSON
cat > "$OUT/ds.json" <<JSON
{"train_batch_size": 4, "train_micro_batch_size_per_gpu": 4, "gradient_clipping": 1.0,
 "steps_per_print": 1000000000,
 "optimizer": {"type": "AdamW", "params": {"lr": 0.003, "betas": [0.9, 0.95], "eps": 1e-8,
                                           "weight_decay": 0.0, "torch_adam": true}},
 "zero_optimization": {"stage": 0},
 "seesaw": {"total_tokens": 2000000, "seq_length": 128, "batch_schedule": "constant",
            "batch_multiple": 4, "data_seed": $((1234 + SEED)),
            "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                            "warmup_start_factor": 0.1, "final_factor": 0.1}}}
JSON
if [ ! -f "$OUT/base/summary.json" ]; then
  python -m seesaw_ds.train --run-config "$OUT/run.json" --deepspeed_config "$OUT/ds.json" \
    $([ -f "$OUT/base/checkpoints/latest" ] && echo --resume)
fi
seesaw-ds cbs --run-config "$OUT/run.json" --deepspeed_config "$OUT/ds.json" --out "$OUT/cbs" \
  --batches 4,8,16,32,64,128 --branch-tokens 131072 --tolerance 0.01 \
  --at-tokens 62500,125000,250000,500000,1000000,1750000
if [ -n "${RECORD:-}" ]; then
  cp "$OUT/cbs/cbs.json" "bench/records/cbs_testbed$SUFFIX.json"
  cp "$OUT/cbs/cbs.png" "bench/records/cbs_testbed$SUFFIX.png"
fi
