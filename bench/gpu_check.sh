#!/usr/bin/env bash
# One-GPU check of seesaw-ds in < 8 minutes; writes one JSON summary (default gpu_check.json).
#   bash bench/gpu_check.sh [--out FILE] [--quick]
# On the GPU machine (CUDA torch installed, no network): if seesaw_ds, deepspeed or
# megatron.core do not import, they are installed from the wheels in $SEESAW_WHEELS
# (default bench/wheels). Make that folder on a machine with network, e.g.
#   pip wheel --no-deps -w bench/wheels . && pip download -d bench/wheels deepspeed==0.19.8 \
#       megatron-core==0.16.1 sentencepiece pyyaml tqdm matplotlib
# (pip download also fetches their dependencies; an installed torch is kept as it is).
# Without a GPU it says so and runs a CPU fallback (tiny shape, a few steps).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c "import seesaw_ds, deepspeed, megatron.core" >/dev/null 2>&1; then
    wheels="${SEESAW_WHEELS:-bench/wheels}"
    if [ ! -d "$wheels" ]; then
        echo "gpu_check: seesaw_ds/deepspeed/megatron-core missing and no wheel folder $wheels" \
             "(set SEESAW_WHEELS; see the header of this script)" >&2
        exit 2
    fi
    "$PYTHON" -m pip install --no-index --find-links "$wheels" seesaw-ds deepspeed megatron-core
fi
if ! "$PYTHON" -c "import torch; assert torch.cuda.is_available()" >/dev/null 2>&1; then
    export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" bench/gpu_check.py "$@"
