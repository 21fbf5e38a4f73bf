"""Real 2-rank DeepSpeed jobs (gloo, CPU): exactness, ZeRO 0-3, bf16, launchers, resume.

Each job is one ``worker.py`` process group running several cases; jobs are module-scoped
fixtures shared by the tests that read them. The uninterrupted runs of the exactness job are
the references of the resume tests (same configs).
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dsa_common import REPO, job_env, max_abs_diff, reference_run, run_job, tiny_config
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.distributed import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("deepspeed") is None, reason="needs the deepspeed launcher"
)

STAGES = (0, 1, 2, 3)
OPTIMIZERS = ("sgd", "adamw")
TOL = 1e-6
SAVE_STEP, KILL_STEP = 56, 60  # the batch grows 8 -> 16 at step 55
OTHER_SCHEDULES = {  # seesaw is in every other case, step in the launcher job
    "constant": {"batch_schedule": "constant"},
    "linear_ramp": {"batch_schedule": "linear_ramp", "final_batch": 32, "batch_increment": 8,
                    "ramp_tokens": 1500},
    "late_switch": {"batch_schedule": "late_switch", "switch_batch": 32},
}


def exact_cases():
    cases = [{"name": f"z{stage}_{opt}", "config": tiny_config(stage, opt)}
             for stage in STAGES for opt in OPTIMIZERS]
    cases.append({"name": "naive_z0_sgd", "mode": "naive", "config": tiny_config(0, "sgd")})
    cases.append({"name": "mbf_z1_adamw", "config": tiny_config(
        1, "adamw", growth_policy="micro_batch_first", max_micro_batch=8)})
    for name, section in OTHER_SCHEDULES.items():
        cases.append({"name": f"{name}_z0_sgd", "config": tiny_config(0, "sgd", **section)})
    return {c["name"]: c for c in cases}


def ten_boundary_config(monitor_dir):
    steps = [[200 * (i + 1), 16 if i % 2 == 0 else 8] for i in range(12)]
    config = tiny_config(2, "adamw", batch_schedule="step", batch_steps=steps)
    config["steps_per_print"] = 5
    config["csv_monitor"] = {"enabled": True, "output_path": str(monitor_dir),
                             "job_name": "seesaw"}
    return config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("dsa_jobs")


@pytest.fixture(scope="module")
def exact_job(workdir):
    return run_job({"cases": list(exact_cases().values())}, workdir / "exact")


@pytest.fixture(scope="module")
def launcher_job(workdir):
    spec = {"cases": [{"name": "ten", "config": ten_boundary_config(workdir / "monitor")}]}
    return run_job(spec, workdir / "launcher", launcher="deepspeed")


@pytest.fixture(scope="module")
def bf16_job(workdir):
    cases = [{"name": f"bf16_z{stage}", "config": tiny_config(stage, "adamw", bf16=True)}
             for stage in STAGES]
    return run_job({"cases": cases}, workdir / "bf16")


@pytest.fixture(scope="module")
def resume_jobs(workdir):
    ckpt = {"z0": str(workdir / "ckpt_z0"), "z1": str(workdir / "ckpt_z1"),
            "z1_fsync": str(workdir / "ckpt_z1_fsync")}
    killed = run_job({"cases": [
        {"name": "z0_save", "config": tiny_config(0, "adamw"), "save_dir": ckpt["z0"],
         "save_at_steps": [SAVE_STEP], "max_steps": SAVE_STEP + 1},
        {"name": "z1_fsync", "config": tiny_config(1, "adamw"), "save_dir": ckpt["z1_fsync"],
         "save_at_steps": [3], "max_steps": 3, "record_fsync": True},
        {"name": "z1_kill", "config": tiny_config(1, "adamw"), "save_dir": ckpt["z1"],
         "save_at_steps": [50, SAVE_STEP], "kill_at_step": KILL_STEP},
    ]}, workdir / "killed", expect_success=False)
    resumed = run_job({"cases": [
        {"name": "z1_resume", "config": tiny_config(1, "adamw"), "resume_from": ckpt["z1"]},
        *changed_run_cases(ckpt["z1"]),
    ]}, workdir / "resumed")
    ckpt["z1_universal"] = str(workdir / "ckpt_z1_universal")
    shutil.copytree(ckpt["z1"], ckpt["z1_universal"])
    tag = Path(ckpt["z1_universal"]) / f"global_step{SAVE_STEP}"
    subprocess.run([sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal",
                    "--input_folder", str(tag), "--output_folder", f"{tag}_universal",
                    "--inject_missing_state"], env=job_env(), check=True, capture_output=True,
                   timeout=300)
    universal = tiny_config(1, "adamw")
    universal["checkpoint"] = {"load_universal": True}
    one_rank = run_job({"cases": [
        {"name": "z0_one_rank", "config": tiny_config(0, "adamw"), "resume_from": ckpt["z0"]},
        {"name": "z1_universal", "config": universal, "resume_from": ckpt["z1_universal"]},
        {"name": "z1_one_rank", "config": tiny_config(1, "adamw"), "resume_from": ckpt["z1"],
         "expect_error": True},
    ]}, workdir / "one_rank", nproc=1)
    return {"killed": killed, "resumed": resumed, "one_rank": one_rank, "ckpt": ckpt}


def _with_lr(config, lr):
    config["optimizer"]["params"]["lr"] = lr
    return config


CHANGED_RUNS = {  # case -> (config of the resume, the field the refusal must name)
    "peak_lr_x10": (_with_lr(tiny_config(1, "adamw"), 0.1),
                    "optimizer.params.lr = 0.1 but checkpoint global_step56 was trained "
                    "with 0.01"),
    "min_lr": (tiny_config(1, "adamw", min_lr=0.005),
               "seesaw.min_lr = 0.005 but checkpoint global_step56 was trained with 0.0"),
    "warmup_start": (tiny_config(1, "adamw", lr_schedule={
        "type": "cosine", "warmup_fraction": 0.1, "warmup_start_factor": 0.2,
        "final_factor": 0.1}), "seesaw.lr_schedule.warmup_start_factor = 0.2 but checkpoint "
                               "global_step56 was trained with 0.1"),
    "data_seed": (tiny_config(1, "adamw", data_seed=8),
                  "seesaw.data_seed = 8 but checkpoint global_step56 was trained with 7"),
}


def changed_run_cases(ckpt_dir):
    cases = [{"name": name, "config": config, "resume_from": ckpt_dir, "expect_error": True}
             for name, (config, _) in CHANGED_RUNS.items()]
    cases.append({"name": "peak_lr_x10_allowed", "config": CHANGED_RUNS["peak_lr_x10"][0],
                  "resume_from": ckpt_dir, "allow_plan_change": True})
    return cases


def assert_follows_plan(job, name, config, dp=2, first_step=0):
    """Every recorded step used exactly the plan's LR, batch, GAS, micro-batch and samples."""
    plan = plan_from_ds_config(config, dp)
    planned = list(plan.iter_steps())[first_step:]
    ranks = [job.case(name, r) for r in range(dp)]
    steps = ranks[0]["steps"]
    assert len(steps) == len(planned)
    for index, (record, (step, tokens, setting)) in enumerate(zip(steps, planned)):
        where = f"{name} step {step}"
        assert record["step"] == step and record["tokens"] == tokens, where
        assert record["lr"] == setting.lr, where
        assert record["global_batch"] == setting.global_batch, where
        assert record["grad_accum"] == setting.grad_accum, where
        assert record["micro_batch"] == setting.micro_batch, where
        assert sum(r["steps"][index]["samples"] for r in ranks) == setting.global_batch, where
        assert record["global_samples"] * plan.seq_length == tokens, where
    final = ranks[0]["final"]
    assert final["tokens"] == plan.trained_tokens and final["step"] == plan.optimizer_steps
    return ranks[0]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_zero_stage_matches_plain_pytorch_reference(exact_job, stage, optimizer):
    name = f"z{stage}_{optimizer}"
    config = exact_cases()[name]["config"]
    result = assert_follows_plan(exact_job, name, config)
    reference = reference_run(config)
    assert [s["lr"] for s in result["steps"]] == reference["lrs"]
    assert max_abs_diff(result["weights"], reference["weights"]) < TOL
    assert exact_job.case(name, 1)["weights"] == result["weights"]  # ranks agree


@pytest.mark.parametrize("schedule", sorted(OTHER_SCHEDULES))
def test_other_batch_schedules_are_exact_too(exact_job, schedule):
    name = f"{schedule}_z0_sgd"
    config = exact_cases()[name]["config"]
    result = assert_follows_plan(exact_job, name, config)
    reference = reference_run(config)
    assert max_abs_diff(result["weights"], reference["weights"]) < TOL


def test_naive_set_train_batch_size_is_what_the_hook_prevents(exact_job):
    result = exact_job.case("naive_z0_sgd")
    rank1 = exact_job.case("naive_z0_sgd", 1)
    short = [a for a, b in zip(result["steps"], rank1["steps"])
             if a["samples"] + b["samples"] != a["global_batch"]]
    assert short, "expected DeepSpeed's own boundary to give a short window"
    reference = reference_run(exact_cases()["naive_z0_sgd"]["config"])
    assert max_abs_diff(result["weights"], reference["weights"]) > 1e-3


def test_micro_batch_first_changes_the_micro_batch_exactly(exact_job):
    config = exact_cases()["mbf_z1_adamw"]["config"]
    result = assert_follows_plan(exact_job, "mbf_z1_adamw", config)
    assert {s["micro_batch"] for s in result["steps"]} == {4, 8}
    reference = reference_run(config)
    assert max_abs_diff(result["weights"], reference["weights"]) < TOL


def test_batch_changes_rebuild_nothing(exact_job, launcher_job):
    for job, name in [(exact_job, "z3_adamw"), (launcher_job, "ten")]:
        boundaries = job.case(name)["boundaries"]
        assert all(b["same_objects"] for b in boundaries)
    ten = launcher_job.case("ten")["boundaries"]
    assert len(ten) >= 10
    growth = ten[-1]["rss"] - ten[0]["rss"]
    assert growth < 4 * 2 ** 20, f"RSS grew {growth} bytes over {len(ten)} batch changes"


def test_deepspeed_launcher_monitor_and_stdout(launcher_job, workdir):
    config = ten_boundary_config(workdir / "monitor")
    result = assert_follows_plan(launcher_job, "ten", config)
    plan = plan_from_ds_config(config, 2)
    csv_dir = workdir / "monitor" / "seesaw"
    for event in ("lr", "global_batch", "micro_batch", "grad_accum", "consumed_tokens"):
        path = csv_dir / f"Train_Seesaw_{event}.csv"
        with open(path) as handle:
            rows = list(csv.reader(handle))[1:]
        assert len(rows) == plan.optimizer_steps, event
    with open(csv_dir / "Train_Seesaw_global_batch.csv") as handle:
        batches = [int(float(row[1])) for row in list(csv.reader(handle))[1:]]
    assert batches == [s["global_batch"] for s in result["steps"]]
    # README, 'which LR to read': Train/Seesaw/lr is the LR each step used; DeepSpeed's
    # Train/Samples/lr is read after the scheduler advanced, so it is the next step's.
    lrs = {}
    for name in ("Seesaw", "Samples"):
        with open(csv_dir / f"Train_{name}_lr.csv") as handle:
            lrs[name] = [float(row[1]) for row in list(csv.reader(handle))[1:]]
    assert lrs["Seesaw"] == [s["lr"] for s in result["steps"]]
    assert lrs["Samples"][:-1] == lrs["Seesaw"][1:] != lrs["Seesaw"][:-1]
    # the seesaw_ds logger on rank 0 only: a progress line every 5th step and at the plan's
    # last, a line at every batch change (stdout: the worker configures no logging)
    lines = [line for line in launcher_job.log.splitlines() if "[seesaw] step=" in line]
    assert len(lines) == -(-plan.optimizer_steps // 5)
    layouts = [(s.global_batch, s.grad_accum) for _, _, s in plan.iter_steps()]
    changes = [line for line in launcher_job.log.splitlines()
               if "[seesaw] batch change at step=" in line]
    assert len(changes) == sum(a != b for a, b in zip(layouts, layouts[1:])) >= 10


@pytest.mark.parametrize("stage", STAGES)
def test_bf16_runs_and_follows_the_plan(bf16_job, stage):
    name = f"bf16_z{stage}"
    result = assert_follows_plan(bf16_job, name, tiny_config(stage, "adamw", bf16=True))
    losses = [loss for s in result["steps"] for loss in s["losses"]]
    assert all(loss == loss and loss < 10 for loss in losses)  # finite, sane


def test_sigkill_after_a_boundary_then_resume_is_bitwise(exact_job, resume_jobs):
    killed, resumed = resume_jobs["killed"], resume_jobs["resumed"]
    assert killed.returncode != 0 and "z1_kill" not in killed.ranks[0]["cases"]
    ckpt = Path(resume_jobs["ckpt"]["z1"])
    assert (ckpt / "latest").read_text() == f"global_step{SAVE_STEP}"
    assert (ckpt / f"global_step{SAVE_STEP}" / "seesaw_state.json").exists()
    full = exact_job.case("z1_adamw")
    for rank in (0, 1):
        after = resumed.case("z1_resume", rank)
        before = exact_job.case("z1_adamw", rank)
        assert after["steps"][0]["step"] == SAVE_STEP
        assert [s["losses"] for s in after["steps"]] == [s["losses"] for s in
                                                          before["steps"][SAVE_STEP:]]
        assert after["steps"] == before["steps"][SAVE_STEP:]  # lr, batch, GAS, samples too
    assert resumed.case("z1_resume")["weights"] == full["weights"]


def test_each_rank_fsyncs_the_checkpoint_files_it_wrote(resume_jobs):
    for rank in (0, 1):
        fsynced = resume_jobs["killed"].case("z1_fsync", rank)["fsynced"]
        assert f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" in fsynced, (rank, fsynced)
        assert f"zero_pp_rank_{1 - rank}_mp_rank_00_optim_states.pt" not in fsynced
    assert "mp_rank_00_model_states.pt" in resume_jobs["killed"].case("z1_fsync", 0)["fsynced"]


@pytest.mark.parametrize("name", sorted(CHANGED_RUNS))
def test_resume_refuses_a_change_naming_the_field_and_both_values(resume_jobs, name):
    for rank in (0, 1):
        error = resume_jobs["resumed"].case(name, rank)["error"]
        assert CHANGED_RUNS[name][1] in error, error
        assert "allow-plan-change" in error


def test_allow_plan_change_continues_from_the_saved_tokens_on_the_new_plan(resume_jobs):
    config = CHANGED_RUNS["peak_lr_x10"][0]
    result = assert_follows_plan(resume_jobs["resumed"], "peak_lr_x10_allowed", config,
                                 first_step=SAVE_STEP)
    first = result["steps"][0]
    assert first["step"] == SAVE_STEP and first["lr"] == pytest.approx(
        10 * resume_jobs["resumed"].case("z1_resume")["steps"][0]["lr"], rel=1e-12)


def test_resume_on_one_rank_keeps_the_clock_and_plan(resume_jobs):
    one = resume_jobs["one_rank"]
    config = tiny_config(0, "adamw")
    result = assert_follows_plan(one, "z0_one_rank", config, dp=1, first_step=SAVE_STEP)
    first = result["steps"][0]
    assert first["global_batch"] == 16 and first["grad_accum"] == 8  # 4 on two ranks
    reference = reference_run(config)
    assert max_abs_diff(result["weights"], reference["weights"]) < TOL
    refused = one.case("z1_one_rank")["error"]
    assert "ZeRO stage 1 on 2" in refused and "load_universal" in refused


def test_zero1_resume_on_one_rank_through_a_universal_checkpoint(resume_jobs):
    config = tiny_config(1, "adamw")
    result = assert_follows_plan(resume_jobs["one_rank"], "z1_universal", config, dp=1,
                                 first_step=SAVE_STEP)
    reference = reference_run(config)
    assert max_abs_diff(result["weights"], reference["weights"]) < TOL


def test_train_example_runs_under_the_deepspeed_launcher(tmp_path):
    cmd = ["bash", str(REPO / "launch" / "run_example.sh"), "--max_steps", "3"]
    env = job_env()
    env["MASTER_PORT"] = str(free_port())
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True,
                          timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "[example] step 3" in log and "global_batch=32" in log
    # the hook's exit handler removed both ranks' DeepSpeed shared-memory buffers (67 MB each)
    shm = f"deepspeed_allreduce_buffer_{os.getuid()}_127.0.0.1_{env['MASTER_PORT']}"
    assert not [name for name in (f"{shm}_0", f"{shm}_1") if (Path("/dev/shm") / name).exists()]
