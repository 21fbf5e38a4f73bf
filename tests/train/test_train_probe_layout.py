"""Adaptive and guard decisions do not depend on the rank layout of a resume: a 2-rank
checkpoint resumed on 1 rank, and a 1-rank checkpoint resumed on 2 ranks, measure the same
small batches (the probe's size in samples travels in the checkpoint) and grow the batch at
the same steps as the uninterrupted run on the original layout.

Before the probe was sized in samples, each rank measured its own first micro-batch: the
adaptive 2 -> 1 resume grew 32 -> 64 -> 96 at steps 53 and 57 instead of 45 and 46 (58
steps instead of 51), the adaptive 1 -> 2 resume grew to 96 at step 30 instead of 37 (37
steps instead of 39), and the guarded 1 -> 2 resume held at 16 from step 132, released at
133 and capped at 32 from 140, where the 1-rank run capped at 32 from step 139.
"""

from __future__ import annotations

import json
import shutil

import pytest

from train_common import ds_config, run_config, train, write_configs

TOTAL = 1.0e5
EVAL = 5.0e4
CHECKPOINT = 2.0e4  # the first checkpoint comes before the later growth decisions


def _config(policy):
    if policy == "guard":
        config = ds_config(TOTAL, guard={"safety_factor": 0.5, "ema_decay": 0.0,
                                         "min_samples": 1})
        config["seesaw"]["max_batch"] = 64
        return config
    config = ds_config(TOTAL, schedule="adaptive")
    config["seesaw"].update(batch_growth=2.0, max_batch=96, adaptive={
        "safety_factor": 1.0, "ema_decay": 0.0, "min_samples": 1})
    return config


def _decisions(run):
    return [(d["step"], d.get("floor"), d.get("cap"))
            for d in run.summary["cbs_guard"]["decisions"]]


def _resume_first_checkpoint(full, out, run_path, ds_path, nproc):
    """A copy of ``full``'s output as it was at its first checkpoint (the later tags gone,
    as if the job died there), resumed on ``nproc`` ranks."""
    shutil.copytree(full.out, out)
    checkpoints = out / "checkpoints"
    tags = sorted((p.name for p in checkpoints.glob("global_step*")),
                  key=lambda name: int(name[len("global_step"):]))
    for tag in tags[1:]:
        shutil.rmtree(checkpoints / tag)
    (checkpoints / "latest").write_text(tags[0])
    (out / "summary.json").unlink()
    saved = json.loads((checkpoints / tags[0] / "cbs_guard.json").read_text())
    return train(run_path, ds_path, out, "--resume", nproc=nproc), saved


@pytest.mark.parametrize("policy, first, then", [("adaptive", 2, 1), ("adaptive", 1, 2),
                                                 ("guard", 1, 2)],
                         ids=["adaptive_2_to_1", "adaptive_1_to_2", "guard_1_to_2"])
def test_resume_on_another_rank_count_takes_the_same_decisions(prepared_dir, train_root,
                                                               policy, first, then):
    folder = train_root / f"probe_layout_{policy}_{first}_to_{then}"
    run_path, ds_path = write_configs(folder, run_config(prepared_dir, EVAL, CHECKPOINT),
                                      _config(policy))
    full = train(run_path, ds_path, folder / "full", nproc=first)
    resumed, saved = _resume_first_checkpoint(full, folder / "resumed", run_path, ds_path,
                                              then)
    assert len(saved["decisions"]) < len(_decisions(full))
    assert resumed.summary["world_size"] == then
    assert _decisions(resumed) == _decisions(full)
    assert saved["probe"] == {"chunk_samples": 2, "chunks": first}  # micro 2 x `first` ranks
    assert [int(r["global_batch"]) for r in resumed.rows] == \
        [int(r["global_batch"]) for r in full.rows]
    assert resumed.summary["optimizer_steps"] == full.summary["optimizer_steps"]
    policy, reference = resumed.summary["cbs_guard"], full.summary["cbs_guard"]
    assert policy["measurements"] == reference["measurements"]
    if reference["b_simple"] is None:  # the last estimate had no positive |G|^2
        assert policy["b_simple"] is None
    else:
        assert policy["b_simple"] == pytest.approx(reference["b_simple"], rel=1e-4)
