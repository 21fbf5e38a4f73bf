"""The megatron-core-only path (docs/megatron_core.md): examples/megatron_core_loop.py, a
loop of one's own with megatron-core's calculator globals and its real
``get_forward_backward_func`` schedule, follows the plan step by step on 2 gloo ranks."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("megatron.core")

from seesaw_ds.config import load_config_file, seesaw_section_of  # noqa: E402
from seesaw_ds.distributed import free_port  # noqa: E402
from seesaw_ds.megatron_adapter import megatron_section  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "ds_configs", "tiny_seesaw.json")

RUN = """
import contextlib, json, sys
import torch.distributed as dist
from megatron.core import parallel_state
sys.path.insert(0, {examples!r})
import megatron_core_loop as loop
dist.init_process_group("gloo")
parallel_state.initialize_model_parallel()
with loop.CudaToCpu():
    records = loop.train({config!r})
if dist.get_rank() == 0:
    json.dump(records, open({out!r}, "w"))
parallel_state.destroy_model_parallel()
dist.destroy_process_group()
"""


def test_own_loop_on_megatron_core_follows_the_plan_on_two_ranks(tmp_path):
    config = load_config_file(CONFIG)
    config["seesaw"]["total_tokens"] = 8e5  # 121 steps, batch 32 -> 288, a short last step
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "records.json"
    script = tmp_path / "run.py"
    script.write_text(RUN.format(examples=os.path.join(ROOT, "examples"), config=str(path),
                                 out=str(out)))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), str(script)],
        capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads(out.read_text())
    plan = megatron_section(seesaw_section_of(config)).build_plan(
        peak_lr=0.003, initial_batch=32, micro_batch=2, dp_size=2)
    expected = [(tokens // plan.seq_length, setting.global_batch, setting.grad_accum,
                 setting.lr) for _, tokens, setting in plan.iter_steps()]
    got = [(r["consumed_samples"], r["global_batch"], r["micro_batches"], r["lr"])
           for r in records]
    assert got == expected  # every step: start, batch, micro-batch count, LR
    assert all(r["forward_passes"] == r["micro_batches"] for r in records)
    assert len(records) == 121 and max(r["global_batch"] for r in records) == 288
    assert records[-1]["global_batch"] == 68  # the last step takes only what is left
    assert records[-1]["consumed_samples"] + records[-1]["global_batch"] == \
        plan.trained_samples
    assert records[-1]["loss"] < records[0]["loss"] / 5
