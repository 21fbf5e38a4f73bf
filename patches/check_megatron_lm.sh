#!/usr/bin/env bash
# Check patches/megatron-lm-seesaw.patch against a Megatron-LM checkout, on CPU.
#
#   bash patches/check_megatron_lm.sh MEGATRON_LM_DIR
#
# Copies MEGATRON_LM_DIR (without .git) to a temporary folder, applies the patch there (the
# checkout itself is never touched) and runs patches/check_megatron_lm.py against the copy:
# Megatron-LM's real argument parsing, global variables, LR-scheduler factory and megatron-core
# calculator, plus a replay of train()'s per-iteration bookkeeping. One PASS/FAIL/SKIP line per
# check; exit status 0 when nothing failed. PYTHON selects the interpreter (default: python),
# which needs seesaw-ds importable (pip install -e .) and torch.
set -euo pipefail
if [ $# -ne 1 ] || [ ! -d "$1/megatron/training" ]; then
    echo "usage: bash patches/check_megatron_lm.sh MEGATRON_LM_DIR (a Megatron-LM checkout)" >&2
    exit 2
fi
MLM=$(cd "$1" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATCH="$REPO/patches/megatron-lm-seesaw.patch"
PYTHON=${PYTHON:-python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
VERSION=$(git -C "$MLM" describe --tags --always 2>/dev/null || echo "no git metadata")
echo "Megatron-LM checkout $MLM ($VERSION)"
(cd "$MLM" && tar --exclude=./.git -cf - .) | (cd "$WORK" && tar -xf -)
if ! (cd "$WORK" && git apply --check "$PATCH" 2>"$WORK/.apply_error"); then
    echo "FAIL patch: does not apply: $(head -n 2 "$WORK/.apply_error" | tr '\n' ' ')"
    exit 1
fi
(cd "$WORK" && git apply "$PATCH")
echo "PASS patch: applies to a copy in $WORK"
cd "$WORK"
PYTHONPATH="$WORK:$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -W ignore \
    "$REPO/patches/check_megatron_lm.py" "$WORK"
