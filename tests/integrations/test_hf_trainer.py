"""HF Trainer and accelerate on a Seesaw plan: exact on 2 CPU ranks, or one-line refusals.

Real jobs: ``hf_worker.py`` trains a tiny random GPT-2 from ``transformers`` with
:class:`SeesawTrainer` under the deepspeed launcher; ``accelerate_worker.py`` lets an
``Accelerator`` with a ``DeepSpeedPlugin`` build a Seesaw engine. The checks read what the
model consumed (sample ids, LR, GAS at every forward) against the plan.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import torch  # noqa: E402

from seesaw_ds.config import plan_from_ds_config  # noqa: E402
from seesaw_ds.deepspeed_adapter import GlobalSampleOrder  # noqa: E402
from seesaw_ds.deepspeed_adapter.validation import validate_ds_config  # noqa: E402
from seesaw_ds.distributed import free_port  # noqa: E402
from seesaw_ds.errors import SeesawConfigError  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
from hf_worker import N_SAMPLES, TokenData, make_model  # noqa: E402

needs_launcher = pytest.mark.skipif(shutil.which("deepspeed") is None,
                                    reason="needs the deepspeed launcher")

SEQ = 8


def seesaw_config(stage: int = 1) -> dict:
    """Batch 4 (micro 1 x GAS 2 x 2 ranks) growing to 8 and 16, short last step: 28 steps.

    SGD without clipping: the weights then show any error in the accumulation (Adam and
    clipping would hide a wrong gradient scale)."""
    return {
        "train_batch_size": 4, "train_micro_batch_size_per_gpu": 1, "gradient_clipping": 0.0,
        "optimizer": {"type": "SGD", "params": {"lr": 0.5, "momentum": 0.9}},
        "zero_allow_untested_optimizer": True,
        "zero_optimization": {"stage": stage},
        "seesaw": {"total_tokens": 1200, "seq_length": SEQ, "batch_schedule": "seesaw",
                   "batch_growth": 2.0, "data_seed": 7,
                   "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                                   "warmup_start_factor": 0.1, "final_factor": 0.1}},
    }


def run(script: str, spec: dict, workdir: Path, nproc: int, launcher: str) -> list:
    """Run ``script`` on ``nproc`` ranks; return each rank's JSON (``spec['out']`` based)."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = dict(spec, out=str(workdir / "result"))
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    port = str(free_port())
    if launcher == "deepspeed":
        cmd = ["deepspeed", "--num_gpus", str(nproc), "--master_port", port]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", port]
    proc = subprocess.run(cmd + [str(HERE / script), "--spec", str(spec_path)], cwd=str(REPO),
                          env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    (workdir / "job.log").write_text(log)
    assert proc.returncode == 0, f"job failed ({proc.returncode}):\n{log[-5000:]}"
    paths = [Path(f"{spec['out']}.rank{rank}.json") for rank in range(nproc)]
    assert all(p.exists() for p in paths), log[-4000:]
    return [json.loads(p.read_text()) for p in paths]


RESUME_STEP = 24  # two steps after the batch grows 4 -> 8 (GAS 2 -> 4)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("hf")


@pytest.fixture(scope="module")
def trained(workdir):
    spec = {"config": seesaw_config(), "save_steps": RESUME_STEP}
    return run("hf_worker.py", spec, workdir / "job", 2, "deepspeed")


@pytest.fixture(scope="module")
def resumed(trained, workdir):
    checkpoint = workdir / "job" / "result.hf" / f"checkpoint-{RESUME_STEP}"
    spec = {"config": seesaw_config(), "resume": str(checkpoint)}
    return run("hf_worker.py", spec, workdir / "resumed", 2, "deepspeed")


def reference_weights(config: dict) -> list:
    """One process, plain torch: each step one backward over its whole batch in plan order."""
    plan = plan_from_ds_config(config, 2)
    order = GlobalSampleOrder(N_SAMPLES, config["seesaw"]["data_seed"])
    data, model = TokenData(SEQ), make_model()
    params = config["optimizer"]["params"]
    opt = torch.optim.SGD(model.parameters(), **params)
    for _, start, setting in plan.iter_steps():
        ids = data.ids[order.take(start // SEQ, setting.global_batch)]
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        for group in opt.param_groups:
            group["lr"] = setting.lr
        opt.step()
    return [p.detach().double().flatten().tolist() for p in model.parameters()]


@needs_launcher
def test_trainer_steps_follow_the_plan_exactly(trained):
    config = seesaw_config()
    plan = plan_from_ds_config(config, 2)
    assert len({s.global_batch for _, _, s in plan.iter_steps()}) >= 3  # the batch grows
    order = GlobalSampleOrder(N_SAMPLES, config["seesaw"]["data_seed"])
    for rank in trained:
        assert "error" not in rank, rank.get("error")
        assert rank["global_step"] == rank["hook_step"] == plan.optimizer_steps
        assert rank["consumed_tokens"] == plan.trained_tokens
    steps = list(plan.iter_steps())
    assert len(trained[0]["steps"]) == len(trained[1]["steps"]) == len(steps)
    consumed = 0
    for (index, start, setting), *ranks in zip(steps, trained[0]["steps"], trained[1]["steps"]):
        seen = []
        for micro in zip(*(r["forwards"] for r in ranks)):  # micro j: rank 0 then rank 1
            assert len(micro) == 2
            for forward in micro:
                assert len(forward["ids"]) == setting.micro_batch, index
                assert forward["gas"] == setting.grad_accum, index
                assert forward["lr"] == pytest.approx(setting.lr, rel=1e-12), index
                seen += forward["ids"]
        assert all(len(r["forwards"]) == setting.grad_accum for r in ranks), index
        assert seen == order.take(start // SEQ, setting.global_batch), index
        consumed += len(seen) * SEQ
    assert consumed == plan.trained_tokens
    assert trained[0]["log_lrs"] == pytest.approx([s.lr for _, _, s in steps], rel=1e-12)


@needs_launcher
def test_trainer_weights_match_one_process_reference(trained):
    got, want = trained[0]["weights"], reference_weights(seesaw_config())
    diff = max(abs(a - b) for pa, pb in zip(got, want) for a, b in zip(pa, pb))
    assert diff < 1e-6


@needs_launcher
def test_trainer_resume_continues_the_same_steps_and_weights(trained, resumed):
    assert "error" not in resumed[0], resumed[0].get("error")
    for full, again in zip(trained, resumed):
        assert again["global_step"] == full["global_step"]
        assert again["consumed_tokens"] == full["consumed_tokens"]
        assert again["steps"] == full["steps"][RESUME_STEP:]  # ids, LR, GAS of every forward
    got, want = resumed[0]["weights"], trained[0]["weights"]
    assert max(abs(a - b) for pa, pb in zip(got, want) for a, b in zip(pa, pb)) < 1e-7


@needs_launcher
def test_accelerator_backward_on_the_seesaw_engine_is_refused(tmp_path):
    spec = {"config": seesaw_config(stage=0), "mode": "accelerate_backward"}
    ranks = run("hf_worker.py", spec, tmp_path / "job", 1, "torchrun")
    message = ranks[0]["error"]
    assert "\n" not in message
    assert message.startswith("accelerator.backward() on a Seesaw engine")


@needs_launcher
def test_accelerate_prepare_refuses_seesaw_initialize(tmp_path):
    config = seesaw_config(stage=0)
    config.update(train_batch_size=2, steps_per_print=10)
    ranks = run("accelerate_worker.py", {"config": config}, tmp_path / "job", 1, "torchrun")
    out = ranks[0]
    assert out["steps_per_print"] == math.inf  # what accelerate always writes
    assert "\n" not in out["error"]
    assert out["error"].startswith("seesaw_ds.initialize is being called by accelerate")
    assert "SeesawTrainer" in out["error"]


# ---- in-process: config handling, no engine -------------------------------------------------


def test_steps_per_print_infinity_is_accepted_as_never():
    config = seesaw_config()
    config["steps_per_print"] = math.inf
    validated = validate_ds_config(config, 2, client_optimizer=True)
    assert validated.ds_config["steps_per_print"] == math.inf
    from seesaw_ds.deepspeed_adapter.engine_hook import _steps_per_print

    assert _steps_per_print(SimpleNamespace(steps_per_print=lambda: math.inf)) is None
    config["gradient_clipping"] = math.inf
    with pytest.raises(SeesawConfigError, match="gradient_clipping"):
        validate_ds_config(config, 2)


def _call_from(module: str):
    """Call ``foreign_driver`` from a function whose module is ``module``."""
    from seesaw_ds.deepspeed_adapter.drivers import foreign_driver

    namespace = {"__name__": module, "foreign_driver": foreign_driver}
    exec("def prepare():\n    return foreign_driver(depth=1)\n", namespace)
    return namespace["prepare"]()


def test_only_accelerates_prepare_counts_as_a_driver():
    assert _call_from("accelerate.accelerator") == "accelerate"
    assert _call_from("accelerate.launchers") is None  # notebook_launcher: user drives
    assert _call_from("my_training_script") is None


def hf_args(**overrides):
    values = dict(learning_rate=1e-3, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                  weight_decay=0.0, max_grad_norm=1.0, gradient_accumulation_steps=1,
                  max_steps=-1)
    values.update(overrides)
    return SimpleNamespace(**values)


def test_trainer_config_resolves_auto_and_runs_gas_one_trainer_steps():
    from seesaw_ds.integrations.hf_trainer import trainer_ds_config

    config = seesaw_config()
    config["optimizer"] = {"type": "AdamW", "params": {"lr": "auto", "betas": "auto"}}
    del config["gradient_clipping"]
    config.update(fp16={"enabled": "auto"}, bf16={"enabled": "auto"})  # fp16 would fail on CPU
    validated, hf_config = trainer_ds_config(config, hf_args(bf16=True), 2, device="cpu")
    assert (hf_config["fp16"]["enabled"], hf_config["bf16"]["enabled"]) == (False, True)
    assert validated.plan.peak_lr == 1e-3
    assert hf_config["optimizer"]["params"]["betas"] == [0.9, 0.999]
    assert hf_config["gradient_clipping"] == 1.0
    assert "seesaw" not in hf_config
    assert (hf_config["train_batch_size"], hf_config["train_micro_batch_size_per_gpu"],
            hf_config["gradient_accumulation_steps"]) == (2, 1, 1)


def test_trainer_config_refusals_name_the_field():
    from seesaw_ds.integrations.hf_trainer import _align_args, trainer_ds_config

    config = seesaw_config()
    del config["optimizer"]
    with pytest.raises(SeesawConfigError, match="no optimizer section"):
        trainer_ds_config(config, hf_args(), 2, device="cpu")
    config = dict(seesaw_config(), train_batch_size="auto")
    with pytest.raises(SeesawConfigError, match="train_batch_size = \"auto\""):
        trainer_ds_config(config, hf_args(), 2, device="cpu")
    validated, hf_config = trainer_ds_config(seesaw_config(), hf_args(), 2, device="cpu")
    with pytest.raises(SeesawConfigError, match="gradient_accumulation_steps = 4"):
        _align_args(hf_args(gradient_accumulation_steps=4), validated, hf_config)
    with pytest.raises(SeesawConfigError, match="auto_find_batch_size = True"):
        _align_args(hf_args(auto_find_batch_size=True), validated, hf_config)
    with pytest.raises(SeesawConfigError, match="max_steps = 29 but the plan ends after 28"):
        _align_args(hf_args(max_steps=29), validated, hf_config)
