#!/usr/bin/env bash
# One-GPU check of seesaw-ds: the paper launch path, kill + resume, Megatron-LM, calibration
# and overhead in about 6 minutes on an H100 (bench/gpu_check.py says what); one JSON.
#   bash bench/gpu_check.sh [--out FILE] [--work DIR] [--keep]
# On the GPU machine (CUDA torch, no network): what does not import (deepspeed, megatron-core,
# pydantic, ...) is installed offline from the wheel folder $SEESAW_WHEELS (default
# gpu_wheels/, made here by `bash bench/make_gpu_wheels.sh`; docs/gpu_check.md) into
# .gpu_site/ (no write to the system Python), and the patched Megatron-LM comes from its
# tarball there. Without a GPU it says so and runs the CPU fallback of the same code path.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python
export SEESAW_WHEELS="${SEESAW_WHEELS:-$PWD/gpu_wheels}"
if ! "$PYTHON" -c "import deepspeed, megatron.core, seesaw_ds" >/dev/null 2>&1; then
    if [ ! -d "$SEESAW_WHEELS" ]; then
        echo "gpu_check: deepspeed / megatron-core / seesaw-ds do not import and there is no" \
             "wheel folder $SEESAW_WHEELS: run bench/make_gpu_wheels.sh where pip works" >&2
        exit 2
    fi
    SITE="$PWD/.gpu_site"
    if [ ! -f "$SITE/.installed" ]; then
        echo "gpu_check: installing $(ls "$SEESAW_WHEELS"/*.whl | wc -l) wheels offline into $SITE"
        rm -rf "$SITE"
        if "$PYTHON" -m pip --version >/dev/null 2>&1; then
            "$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" \
                "$SEESAW_WHEELS"/*.whl
        else  # no pip: a wheel is a zip of the install tree (+ .data/scripts for bin/)
            "$PYTHON" - "$SITE" "$SEESAW_WHEELS"/*.whl <<'PY'
import glob, os, shutil, sys, zipfile
site = sys.argv[1]
for wheel in sys.argv[2:]:
    zipfile.ZipFile(wheel).extractall(site)
for data in glob.glob(os.path.join(site, "*.data")):
    for kind in os.listdir(data):
        target = os.path.join(site, "bin") if kind == "scripts" else site
        shutil.copytree(os.path.join(data, kind), target, dirs_exist_ok=True)
    shutil.rmtree(data)
for script in glob.glob(os.path.join(site, "bin", "*")):
    with open(script, "rb") as handle:
        text = handle.read()
    if text.startswith(b"#!python"):
        text = b"#!" + sys.executable.encode() + text[len(b"#!python"):]
        with open(script, "wb") as handle:
            handle.write(text)
    os.chmod(script, 0o755)
PY
        fi
        touch "$SITE/.installed"
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$SITE/bin:$PATH"
fi
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        >/dev/null 2>&1; then
    export DS_ACCELERATOR="${DS_ACCELERATOR:-cpu}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHON
exec "$PYTHON" bench/gpu_check.py "$@"
