#!/usr/bin/env bash
# Tiny CPU reproduction of the paper's comparison at equal tokens: cosine, Seesaw and the
# constant-batch/constant-LR baseline, each on 2 ranks (gloo) on the embedded corpus.
# Writes results/repro_tiny/{summary.json,table.md,figure1.png} and one folder per run.
#   NPROC=2 OUT=results/repro_tiny SCHEDULES="cosine seesaw constant" bash launch/repro_tiny.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
NPROC="${NPROC:-2}"
OUT="${OUT:-results/repro_tiny}"
SCHEDULES="${SCHEDULES:-cosine seesaw constant}"
RUN_CONFIG="launch/run_configs/tiny.yaml"

for schedule in $SCHEDULES; do
  [ -f "ds_configs/tiny_${schedule}.json" ] || { echo "repro_tiny: no ds_configs/tiny_${schedule}.json" >&2; exit 2; }
done
seesaw-ds prepare --out results/data/stdlib --vocab-size 2048
run_dirs=()
for schedule in $SCHEDULES; do
  echo "== ${schedule}: $(seesaw-ds plan "ds_configs/tiny_${schedule}.json" --dp-size "$NPROC" | tail -1)"
  deepspeed --num_gpus "$NPROC" --master_port "${MASTER_PORT:-29531}" --module seesaw_ds.train --run-config "$RUN_CONFIG" \
    --deepspeed_config "ds_configs/tiny_${schedule}.json" --output-dir "$OUT/$schedule" \
    --name "$schedule"
  run_dirs+=("$OUT/$schedule")
done
python -m seesaw_ds.report.compare "$OUT" "${run_dirs[@]}"
echo "wrote $OUT/summary.json, $OUT/table.md, $OUT/figure1.png"
