"""Config validation before any engine is built: one SeesawConfigError naming the field."""

import copy

import pytest

from dsa_common import tiny_config
from seesaw_ds.deepspeed_adapter import validate_ds_config
from seesaw_ds.errors import SeesawConfigError


def _raises(config, match, dp=2, device="cpu", **kwargs):
    with pytest.raises(SeesawConfigError, match=match):
        validate_ds_config(config, dp, device=device, **kwargs)


def test_valid_config_is_stripped_and_laid_out():
    config = tiny_config()
    out = validate_ds_config(config, 2)
    assert "seesaw" not in out.ds_config and "seesaw" in config  # input untouched
    assert out.ds_config["train_batch_size"] == 8
    assert out.ds_config["train_micro_batch_size_per_gpu"] == 2
    assert out.ds_config["gradient_accumulation_steps"] == 2
    assert out.plan.dp_size == 2 and out.plan.optimizer_steps == 69


def test_seesaw_and_scheduler_sections_together():
    config = tiny_config()
    config["scheduler"] = {"type": "WarmupLR", "params": {}}
    _raises(config, r"\"scheduler\"")


def test_missing_total_tokens_and_seq_length():
    for key in ("total_tokens", "seq_length"):
        config = tiny_config()
        del config["seesaw"][key]
        _raises(config, f"seesaw.{key} is missing")


def test_unknown_seesaw_key_suggests_the_right_one():
    config = tiny_config()
    config["seesaw"]["batch_grwth"] = 2.0
    _raises(config, r"seesaw.batch_grwth .*Did you mean 'batch_growth'")


def test_train_batch_size_inconsistent_with_micro_gas_world():
    config = tiny_config()
    config["gradient_accumulation_steps"] = 3
    _raises(config, r"train_batch_size = 8 != .* 2 x 3 x 2")


def test_planned_batch_not_a_multiple_of_micro_times_dp():
    config = tiny_config(batch_schedule="step", batch_steps=[[1000, 6]])
    _raises(config, r"seesaw.batch_steps\[0\] batch = 6 is not a positive multiple of 4")
    config = tiny_config()
    config["train_batch_size"] = 10
    _raises(config, r"train_batch_size = 10 is not divisible")


def test_fp16_on_cpu_names_the_field_and_suggests_bf16():
    config = tiny_config()
    config["fp16"] = {"enabled": True}
    _raises(config, r"fp16.enabled .*bf16")
    validate_ds_config(config, 2, device="cuda")  # fine on a GPU


def test_adam_on_cpu_falls_back_to_torch_adam_with_a_note():
    config = tiny_config(optimizer="adamw")
    del config["optimizer"]["params"]["torch_adam"]
    out = validate_ds_config(config, 2)
    assert out.ds_config["optimizer"]["params"]["torch_adam"] is True
    assert "torch_adam" not in config["optimizer"]["params"]
    assert any("FusedAdam" in note for note in out.notes)
    on_gpu = validate_ds_config(config, 2, device="cuda")
    assert "torch_adam" not in on_gpu.ds_config["optimizer"]["params"]
    explicit = copy.deepcopy(config)
    explicit["optimizer"]["params"]["torch_adam"] = False
    kept = validate_ds_config(explicit, 2)
    assert kept.ds_config["optimizer"]["params"]["torch_adam"] is False
    assert any("compiles" in note for note in kept.notes)


def test_untested_zero_optimizer_is_refused_early():
    config = tiny_config(stage=2)
    del config["zero_allow_untested_optimizer"]
    _raises(config, r"zero_allow_untested_optimizer")
    validate_ds_config(config, 2, client_optimizer=True)  # not DeepSpeed's to build


def test_unmanaged_accumulation_and_elasticity_are_refused():
    config = tiny_config()
    config["managed_gradient_accumulation"] = False
    _raises(config, r"managed_gradient_accumulation")
    config = tiny_config()
    config["elasticity"] = {"enabled": True}
    _raises(config, r"elasticity.enabled")


def test_every_batch_schedule_validates_from_the_config_alone():
    schedules = {
        "seesaw": {},
        "constant": {"batch_schedule": "constant"},
        "linear_ramp": {"batch_schedule": "linear_ramp", "final_batch": 32,
                        "batch_increment": 8, "ramp_tokens": 1500},
        "step": {"batch_schedule": "step", "batch_steps": [[1000, 16], [2000, 32]]},
        "late_switch": {"batch_schedule": "late_switch", "switch_batch": 32},
    }
    for name, section in schedules.items():
        out = validate_ds_config(tiny_config(**section), 2)
        assert out.plan.batch_schedule.type_name == name
        assert all(p.global_batch % 4 == 0 for p in out.plan.phases)


def test_initialize_refuses_before_building_an_engine(monkeypatch):
    import deepspeed

    import seesaw_ds

    def boom(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("deepspeed.initialize was called")

    monkeypatch.setattr(deepspeed, "initialize", boom)
    monkeypatch.setenv("WORLD_SIZE", "2")
    from dsa_common import make_model

    config = tiny_config()
    config["fp16"] = {"enabled": True}
    with pytest.raises(SeesawConfigError, match="fp16.enabled"):
        seesaw_ds.initialize(model=make_model(), config=config)
    with pytest.raises(SeesawConfigError, match="lr_scheduler"):
        seesaw_ds.initialize(model=make_model(), config=tiny_config(), lr_scheduler=object())
    with pytest.raises(SeesawConfigError, match="no \"seesaw\" section"):
        plain = tiny_config()
        del plain["seesaw"]
        seesaw_ds.initialize(model=make_model(), config=plain)


def test_non_finite_numbers_in_the_deepspeed_part_are_refused():
    for path, value in (("gradient_clipping", float("inf")),
                        ("optimizer.params.betas", [0.9, float("nan")]),
                        ("optimizer.params.lr", float("nan")),
                        ("train_batch_size", float("inf"))):
        config = tiny_config()
        target = config
        for key in path.split(".")[:-1]:
            target = target[key]
        target[path.split(".")[-1]] = value
        _raises(config, rf"{path}.* must be a (positive )?(finite number|integer)")


def test_optimizer_hyper_parameters_read_as_text_get_a_hint():
    config = tiny_config()
    config["optimizer"]["params"]["weight_decay"] = "1e-2"
    _raises(config, r"optimizer.params.weight_decay = '1e-2' must be a number. It was read "
                    r"as text")


@pytest.mark.parametrize("key, value, field", [
    ("sequence_parallel_size", 2, "sequence_parallel_size = 2"),
    ("tensor_parallel", {"autotp_size": 2}, "tensor_parallel.autotp_size = 2"),
])
def test_unsupported_parallel_layouts_are_refused(key, value, field):
    config = tiny_config()
    config[key] = value
    _raises(config, rf"{field}: Seesaw schedules data-parallel runs only")
    config[key] = 1 if key == "sequence_parallel_size" else {"autotp_size": 1}
    validate_ds_config(config, 2)  # a size of 1 is plain data parallelism


def test_layout_and_dataset_checks_run_before_deepspeed_initialize(monkeypatch):
    import deepspeed
    import torch

    import seesaw_ds
    from dsa_common import make_model

    def boom(*args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("deepspeed.initialize was called")

    monkeypatch.setattr(deepspeed, "initialize", boom)
    monkeypatch.setenv("WORLD_SIZE", "2")

    class Blob:
        pass

    with pytest.raises(SeesawConfigError,
                       match="training_data is a Blob without __len__ and __getitem__ nor "):
        seesaw_ds.initialize(model=make_model(), config=tiny_config(), training_data=Blob())
    with pytest.raises(SeesawConfigError, match="past_end = 'never' is unknown"):
        seesaw_ds.initialize(model=make_model(), config=tiny_config(), past_end="never")
    with pytest.raises(SeesawConfigError, match="iterable_stream = 'all' is unknown"):
        seesaw_ds.initialize(model=make_model(), config=tiny_config(), iterable_stream="all")
    with pytest.raises(SeesawConfigError, match="sample_count = 3 must be a callable"):
        seesaw_ds.initialize(model=make_model(), config=tiny_config(), sample_count=3)
    batches = torch.utils.data.DataLoader(list(range(10)), batch_size=2)
    with pytest.raises(SeesawConfigError, match="training_data is a DataLoader that yields "
                       "batches: pass its dataset"):
        seesaw_ds.initialize(model=make_model(), config=tiny_config(), training_data=batches)
    mbf = tiny_config(growth_policy="micro_batch_first", max_micro_batch=8)
    with pytest.raises(SeesawConfigError, match="changes the per-GPU micro-batch from "
                       "train_micro_batch_size_per_gpu = 2 to 4 at optimizer step 0"):
        seesaw_ds.initialize(model=make_model(), config=mbf)
    with pytest.raises(SeesawConfigError, match="training_data is empty"):
        seesaw_ds.initialize(model=make_model(), config=tiny_config(), training_data=[])
    with pytest.raises(SeesawConfigError, match=r"mesh_param = \(1, 2\) asks for sequence"):
        seesaw_ds.initialize(model=make_model(), config=tiny_config(), mesh_param=(1, 2))
    config = tiny_config()
    config["sequence_parallel_size"] = 2
    with pytest.raises(SeesawConfigError, match="sequence_parallel_size = 2"):
        seesaw_ds.initialize(model=make_model(), config=config)
