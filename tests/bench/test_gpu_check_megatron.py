"""The GPU check's Megatron-LM part reads Megatron-LM's per-iteration log lines and holds them
against the plan of the same ``--seesaw-config`` (the run itself needs CUDA; these lines are
written in ``training_log``'s format)."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from gpu_check import _settings  # noqa: E402
from gpu_check_megatron import _check, _parse, seesaw_config  # noqa: E402


def _log(plan, lr_after=True):
    """Megatron-LM's lines: the iteration's batch; the LR after the scheduler stepped."""
    lines, consumed = [], 0
    for index, (_, _, setting) in enumerate(plan.iter_steps(), start=1):
        consumed += setting.global_batch
        lr = plan.at_samples(consumed).lr if lr_after else setting.lr
        lines.append(
            f" [2026-12-05 10:00:00.000000] iteration {index:8d}/{plan.optimizer_steps:8d} |"
            f" consumed samples: {consumed:12d} | elapsed time per iteration (ms): 12.5 |"
            f" throughput per GPU (TFLOP/s/GPU): 3.1 | learning rate: {lr:.6E} |"
            f" global batch size: {setting.global_batch:5d} | lm loss: 8.312500E+00 |"
            f" loss scale: 1.0 | grad norm: 1.234 | number of skipped iterations:   0 |")
    return "\n".join(lines)


def test_megatron_log_lines_against_the_plan():
    from seesaw_ds.config import plan_from_ds_config

    settings = _settings(True)["megatron"]
    plan = plan_from_ds_config(seesaw_config(settings), 1)
    lines = _parse("noise\n" + _log(plan) + "\nmore noise")
    assert [line["iteration"] for line in lines] == list(range(1, plan.optimizer_steps + 1))
    assert len({line["batch"] for line in lines}) > 1  # the check's config changes batch
    assert _check(lines, plan) == {"mismatches": [], "every_iteration_equals_plan": True}

    shifted = _parse(_log(plan, lr_after=False))  # the LR of the iteration itself: off
    assert not _check(shifted, plan)["every_iteration_equals_plan"]
    wrong = [dict(line) for line in lines]
    wrong[9]["batch"] += 4
    result = _check(wrong, plan)
    assert not result["every_iteration_equals_plan"]
    assert [m["iteration"] for m in result["mismatches"]] == [10]
