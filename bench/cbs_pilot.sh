#!/usr/bin/env bash
# Pilot of `seesaw-ds cbs` (docs/cbs.md): the micro GPT on the small stdlib corpus of the
# tests (BPE 512, 400 kB), seq 64, cosine at a constant batch 8 (micro 2, one rank), peak
# 3e-3, 1.2e5 tokens, checkpoints every 3e4; branches of 8,192 tokens at batches 8..64,
# tolerance 1%. About 2-3 minutes on 2 CPU cores; resumable (rerun to continue).
#   bash bench/cbs_pilot.sh            # -> results/cbs_pilot/cbs/cbs.{json,png}
set -euo pipefail
OUT=${OUT:-results/cbs_pilot}
export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
cat > "$OUT/run.json" <<JSON
{"model": {"shape": "micro"},
 "data": {"prepared_dir": "$OUT/data", "vocab_size": 512, "max_bytes": 400000,
          "split": "80,20,0"},
 "eval": {"interval_tokens": 30000, "batches": 2, "batch_size": 8},
 "checkpoint": {"interval_tokens": 30000}, "output_dir": "$OUT/base", "seed": 0}
JSON
cat > "$OUT/ds.json" <<JSON
{"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2, "gradient_clipping": 1.0,
 "steps_per_print": 1000000000,
 "optimizer": {"type": "AdamW", "params": {"lr": 0.003, "betas": [0.9, 0.95], "eps": 1e-8,
                                           "weight_decay": 0.0, "torch_adam": true}},
 "zero_optimization": {"stage": 0},
 "seesaw": {"total_tokens": 120000, "seq_length": 64, "batch_schedule": "constant",
            "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                            "warmup_start_factor": 0.1, "final_factor": 0.1}}}
JSON
if [ ! -f "$OUT/base/summary.json" ]; then
  python -m seesaw_ds.train --run-config "$OUT/run.json" --deepspeed_config "$OUT/ds.json" \
    --no-progress $([ -f "$OUT/base/checkpoints/latest" ] && echo --resume)
fi
seesaw-ds cbs --run-config "$OUT/run.json" --deepspeed_config "$OUT/ds.json" --out "$OUT/cbs" \
  --batches 8,16,32,64 --branch-tokens 8192 --tolerance 0.01
