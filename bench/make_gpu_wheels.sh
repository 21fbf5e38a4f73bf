#!/usr/bin/env bash
# Fill gpu_wheels/ (ignored by git) with what bench/gpu_check.sh needs on the lent GPU machine
# and that machine lacks (it has Python 3.12, CUDA torch 2.11, numpy, pyyaml, sentencepiece,
# tqdm, matplotlib, ninja, psutil, msgpack, py-cpuinfo, nvidia-ml-py, packaging,
# typing-extensions, transformers, ...; no network):
#   - deepspeed (a wheel built here from its sdist: pure Python, ops JIT-built on use),
#   - megatron-core (cp312 manylinux wheel: its dataset helpers come compiled),
#   - pydantic, pydantic-core, annotated-types, typing-inspection, hjson, einops (deepspeed's
#     requirements the machine lacks), and typing-extensions and packaging: pydantic and
#     megatron-core pin newer ones than the machine may have (installed into .gpu_site,
#     they shadow the system copies),
#   - this package's wheel,
#   - megatron_lm_seesaw.tar.gz: Megatron-LM patched with patches/megatron-lm-seesaw.patch,
#     only what pretrain_gpt.py imports besides megatron.core (pretrain_gpt.py, its builders,
#     megatron/{training,post_training,rl,elastification,inference}).
# Usage (where pip reaches PyPI; a few MiB):
#   bash bench/make_gpu_wheels.sh [--python-version 3.12] [--out gpu_wheels]
#        [--megatron-lm /work/mlm_v019]
# MEGATRON_LM_DIR may name the Megatron-LM checkout instead of --megatron-lm; it is read only
# (copied, then patched). --python-version 3.11 gives the wheels of a Python 3.11 machine
# (megatron-core then stops at 0.16.1), for testing the offline install on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=3.12
OUT=gpu_wheels
MLM="${MEGATRON_LM_DIR:-/work/mlm_v019}"
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) PYVER="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --megatron-lm) MLM="$2"; shift 2 ;;
        *) echo "make_gpu_wheels: unknown argument $1" >&2; exit 2 ;;
    esac
done
PYTHON="${PYTHON:-python}"
DEEPSPEED_VERSION="${DEEPSPEED_VERSION:-0.19.8}"
case "$PYVER" in
    3.12|3.13) MCORE_VERSION="${MCORE_VERSION:-0.19.2}" ;;
    *) MCORE_VERSION="${MCORE_VERSION:-0.16.1}" ;;
esac
# deepspeed's requirements that the GPU machine lacks (the rest it has; see the header).
EXTRA="pydantic pydantic-core annotated-types typing-inspection typing-extensions hjson einops packaging"

rm -rf "$OUT"
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "make_gpu_wheels: deepspeed $DEEPSPEED_VERSION from its sdist"
# No build isolation: deepspeed's setup.py imports torch, and an isolated build would resolve a
# (CUDA) torch from PyPI; the CPU torch installed here is enough to build the pure wheel.
DS_BUILD_OPS=0 "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation --no-binary deepspeed \
    -w "$OUT" "deepspeed==$DEEPSPEED_VERSION"

echo "make_gpu_wheels: megatron-core $MCORE_VERSION and $EXTRA for cp${PYVER/./} manylinux x86_64"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 -d "$OUT" \
    "megatron-core==$MCORE_VERSION"
# pydantic-core must be the version pydantic pins: resolve the pair together (pure deps only).
"$PYTHON" -m pip download -q --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$WORK/resolved" $EXTRA
for name in $EXTRA; do
    file=$(ls "$WORK/resolved" | grep -i "^$(echo "$name" | tr - _)-" | head -n 1)
    [ -n "$file" ] || { echo "make_gpu_wheels: $name not downloaded" >&2; exit 1; }
    cp "$WORK/resolved/$file" "$OUT/"
done

echo "make_gpu_wheels: seesaw-ds"
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" .
rm -rf build seesaw_ds.egg-info 2>/dev/null || true

if [ -d "$MLM/megatron/training" ]; then
    echo "make_gpu_wheels: Megatron-LM from $MLM, patched"
    mkdir -p "$WORK/mlm"
    (cd "$MLM" && tar --exclude=./.git -cf - pretrain_gpt.py gpt_builders.py model_provider.py \
        megatron/training megatron/post_training megatron/rl megatron/elastification \
        megatron/inference 2>/dev/null) | (cd "$WORK/mlm" && tar -xf -)
    git -C "$WORK/mlm" apply "$PWD/patches/megatron-lm-seesaw.patch"
    grep -q "seesaw" "$WORK/mlm/megatron/training/arguments.py" \
        || { echo "make_gpu_wheels: the patch did not apply to $MLM" >&2; exit 1; }
    find "$WORK/mlm" -name "__pycache__" -prune -exec rm -rf {} +
    tar -czf "$OUT/megatron_lm_seesaw.tar.gz" -C "$WORK/mlm" .
else
    echo "make_gpu_wheels: no Megatron-LM checkout at $MLM (--megatron-lm DIR): the GPU" \
         "check will skip its Megatron part" >&2
fi

"$PYTHON" bench/gpu_check_wheels.py "$OUT" --python-version "$PYVER"
total=$(du -sb "$OUT" | cut -f1)
ls -l "$OUT" | tail -n +2 | awk '{printf "  %9d  %s\n", $5, $9}'
echo "make_gpu_wheels: $(ls "$OUT" | wc -l) files, $((total / 1024 / 1024)) MiB in $OUT"
if [ "$total" -gt $((40 * 1024 * 1024)) ]; then
    echo "make_gpu_wheels: over 40 MiB" >&2
    exit 1
fi
