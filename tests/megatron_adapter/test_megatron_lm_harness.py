"""The patch against Megatron-LM's own code: ``bash patches/check_megatron_lm.sh $MEGATRON_LM_DIR``.

Skipped (with the reason printed under ``pytest -rs``) when MEGATRON_LM_DIR is unset: CI has
no Megatron-LM source. With it set (a checkout of core_v0.18.0 or later), the harness runs
once (~1-2 min) and each of its checks is one test here.
"""

import glob
import os
import subprocess
import sys

import pytest

from seesaw_ds.megatron_adapter import REPLACED_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MEGATRON_LM_DIR = os.environ.get("MEGATRON_LM_DIR")

pytestmark = pytest.mark.skipif(
    not MEGATRON_LM_DIR,
    reason="MEGATRON_LM_DIR is unset: point it at a Megatron-LM checkout (core_v0.18.0 or "
    "later) to run patches/check_megatron_lm.sh against Megatron-LM's own code",
)

CHECKS = (
    ["patch"]
    + [f"shipped:{os.path.basename(path)}"
       for path in sorted(glob.glob(os.path.join(ROOT, "ds_configs", "*_seesaw.json")))]
    + ["replay:skipped-update+iterations-to-skip+resume", "layout:gtp-weight-remat",
       "lr:optimizer-cuda-graph-tensor", "checkpoint:no-save-at-microbatch-change",
       "length:--train-iters-equal",
       "length:--train-samples-equal"]
    + [f"bad:{flag}" for flag, _ in REPLACED_FLAGS.values()]
    + [f"bad:{name}" for name in ("--global-batch-size", "--lr", "--adam-beta2", "--train-iters",
                                  "--train-samples", "--seq-length", "micro-x-dp",
                                  "batch-not-multiple", "missing-config")]
    + ["pipeline:interleaved-pp2-vpp2-dp8"]
    + [f"bad:frozen:{flag}" for flag in ("--cuda-graph-impl", "--cuda-graph-impl-te",
                                         "--enable-cuda-graph", "--external-cuda-graph",
                                         "--hybrid-context-parallel")]
    + ["bad:all-at-once", "bad:written-default:--weight-decay",
       "bad:written-default:--lr-decay-style", "resume:changed-peak-lr",
       "resume:non-seesaw-checkpoint", "resume:non-seesaw-checkpoint+join",
       "resume:seesaw-checkpoint-without-config", "interval:tokens",
       "interval:iterations-converted-at-start-up", "bad:interval:both", "log:seesaw-metrics",
       "checkpoint:real-save-load-torch", "checkpoint:real-load-non-seesaw",
       "checkpoint:real-load-non-seesaw+join", "checkpoint:real-save-load-torch_dist",
       "checkpoint:real-load-seesaw-without-config-torch",
       "checkpoint:real-load-seesaw-without-config-torch_dist",
       "layout:tp2-sp-pp2-vpp2-cp2-distopt-world64", "schedule:real-forward-backward",
       "data:real-sampler-single", "data:real-sampler-cyclic"]
    + ["pretrain_gpt.py:bad-input", "pretrain_gpt.py:start"]
)


@pytest.fixture(scope="module")
def harness():
    done = subprocess.run(
        ["bash", os.path.join(ROOT, "patches", "check_megatron_lm.sh"), MEGATRON_LM_DIR],
        capture_output=True, text=True, timeout=1200,
        env=dict(os.environ, PYTHON=sys.executable),
    )
    results = {}
    for line in done.stdout.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("PASS", "FAIL", "SKIP"):
            name, _, detail = rest.partition(": ")
            results[name] = (status, detail)
    return done, results


@pytest.mark.parametrize("name", CHECKS)
def test_harness_check(harness, name):
    done, results = harness
    assert name in results, f"no result for {name}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    status, detail = results[name]
    if status == "SKIP":
        pytest.skip(f"{name}: {detail}")
    assert status == "PASS", f"{name}: {detail}"


def test_harness_exits_zero_with_no_failure(harness):
    done, results = harness
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not [name for name, (status, _) in results.items() if status == "FAIL"]
