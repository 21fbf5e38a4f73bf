"""Megatron-LM arguments under --seesaw-config: the plan decides, conflicts are one-line errors.

The namespaces here carry what Megatron-LM's validate_args has set when the patch calls
``configure_megatron_args`` (data_parallel_size known, global_batch_size not yet defaulted).
The same checks through Megatron-LM's real parser: test_megatron_lm_harness.py.
"""

import argparse
import os
from types import SimpleNamespace

import pytest

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.megatron_adapter import (
    REPLACED_FLAGS,
    configure_megatron_args,
    explicit_flags,
    plan_samples,
)
from seesaw_ds.megatron_adapter.megatron_lm import configure_args

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_150M = os.path.join(ROOT, "ds_configs", "150m_b256_seesaw.json")


def _args(**overrides):
    values = dict(
        seesaw_config=CONFIG_150M, seq_length=1024, micro_batch_size=2, data_parallel_size=8,
        gtp_weight_remat_size=1, global_batch_size=None,
        _is_global_batch_size_explicitly_specified=False, lr=None, weight_decay=0.01,
        adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, train_iters=None,
        train_samples=None, rampup_batch_size=None, rank=0,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


def _plan_samples_150m():
    """Samples the 150M plan consumes, summed from the plan's steps (never steps x batch)."""
    plan = configure_megatron_args(_args())
    return sum(setting.global_batch for _, _, setting in plan.iter_steps())


def test_shipped_config_is_laid_out_with_accumulation_and_sets_length_from_the_plan():
    lines = []
    args = _args()
    plan = configure_megatron_args(args, log=lines.append)
    assert plan.growth_policy == "accumulation"
    assert {phase.micro_batch for phase in plan.phases} == {2}
    assert [(phase.global_batch, phase.grad_accum) for phase in plan.phases][:4] == [
        (256, 16), (256, 16), (288, 18), (304, 19)]  # micro-batches of 2 x 8 ranks
    assert all(phase.grad_accum * 16 == phase.global_batch for phase in plan.phases)
    assert (args.global_batch_size, args.lr, args.weight_decay, args.adam_beta2) == (
        256, 0.003, 0.0, 0.95)  # from the config, not Megatron's defaults 0.01 / 0.999
    assert plan.optimizer_steps == 7757
    samples = plan_samples(plan)
    assert args.train_samples == samples == _plan_samples_150m()
    assert 3.3e9 / 1024 <= samples < 3.3e9 / 1024 + 2528  # the budget, at most a last batch
    assert args.train_iters is None  # sample-based; set to 7757 when the calculator installs
    assert len(lines) == 1
    assert "growth_policy 'micro_batch_first' laid out as 'accumulation'" in lines[0]
    assert f"7757 iterations, train samples {samples}" in lines[0]


def test_training_length_that_repeats_the_plan_is_accepted():
    assert configure_megatron_args(_args(train_iters=7757)).optimizer_steps == 7757
    samples = _plan_samples_150m()
    args = _args(train_samples=samples)
    configure_megatron_args(args)
    assert args.train_samples == samples


@pytest.mark.parametrize("overrides, parts", [
    (dict(train_iters=100), ["--train-iters 100", "7757 iterations", "{samples} samples"]),
    (dict(train_samples=3222000), ["--train-samples 3222000", "{samples} samples"]),
    (dict(global_batch_size=128, _is_global_batch_size_explicitly_specified=True),
     ["--global-batch-size 128", "train_batch_size = 256"]),
    (dict(lr=0.001), ["--lr 0.001", "optimizer.params.lr = 0.003"]),
    (dict(seq_length=2048), ["seesaw.seq_length = 1024", "--seq-length 2048"]),
    (dict(micro_batch_size=4), ["seesaw.batch_multiple = 16", "= 32"]),
    (dict(seesaw_config="/nonexistent/seesaw.json"), ["cannot read config",
                                                      "/nonexistent/seesaw.json"]),
])
def test_disagreeing_arguments_are_errors_that_print_both_values(overrides, parts):
    samples = _plan_samples_150m()
    with pytest.raises(SeesawConfigError) as error:
        configure_megatron_args(_args(**overrides))
    parts = [part.format(samples=samples) for part in parts]
    assert all(part in str(error.value) for part in parts), str(error.value)


def test_a_given_optimizer_flag_must_repeat_the_config_but_a_default_is_replaced():
    with pytest.raises(SeesawConfigError, match=r"--adam-beta2 0\.98 .*betas\[1\] = 0\.95"):
        configure_megatron_args(_args(adam_beta2=0.98), explicit=("adam_beta2",))
    args = _args(adam_beta2=0.95, weight_decay=0.0)
    configure_megatron_args(args, explicit=("adam_beta2", "weight_decay"))
    assert (args.adam_beta2, args.weight_decay) == (0.95, 0.0)


@pytest.mark.parametrize("dest", sorted(REPLACED_FLAGS))
def test_each_flag_the_plan_replaces_is_refused_naming_the_seesaw_key(dest):
    flag, replacement = REPLACED_FLAGS[dest]
    with pytest.raises(SeesawConfigError) as error:
        configure_megatron_args(_args(), explicit=(dest,))
    message = str(error.value)
    assert message.startswith(f"{flag} cannot be combined with --seesaw-config")
    assert replacement in message


def test_explicit_flags_are_those_written_on_the_command_line_even_at_their_default():
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--min-lr", type=float, default=0.0)
    parser.add_argument("--lr-decay-style", default="linear")
    parser.add_argument("--adam-beta2", type=float, default=0.999)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--decrease-batch-size-if-needed", action="store_true")
    argv = ["--min-lr", "1e-5", "--lr-decay-style", "linear", "--weight-decay=0.01",
            "--adam-beta2", "0.95"]
    given = parser.parse_args(argv)
    assert explicit_flags(parser, given, argv) == (
        "min_lr", "lr_decay_style", "weight_decay", "adam_beta2")
    argv = ["--decrease-batch-size-if-needed"]
    assert explicit_flags(parser, parser.parse_args(argv), argv) == (
        "decrease_batch_size_if_needed",)
    assert explicit_flags(parser, parser.parse_args([]), []) == ()


def test_gtp_weight_remat_multiplies_the_data_parallel_divisor():
    plan = configure_megatron_args(_args(data_parallel_size=4, gtp_weight_remat_size=2))
    assert plan.dp_size == 8
    assert plan.phases[0].grad_accum == 256 // (2 * 4 * 2)
    with pytest.raises(SeesawConfigError, match="= 32"):  # 2 x 8 x 2 does not divide 16
        configure_megatron_args(_args(gtp_weight_remat_size=2))


def test_seesaw_only_config_takes_batch_and_lr_from_megatron(tmp_path):
    config = tmp_path / "seesaw.yaml"
    config.write_text("seesaw:\n  total_tokens: 1.0e7\n  seq_length: 1024\n"
                      "  lr_schedule: {type: cosine}\n")
    args = _args(seesaw_config=str(config), global_batch_size=64, lr=1e-3,
                 _is_global_batch_size_explicitly_specified=True)
    plan = configure_megatron_args(args)
    assert (plan.initial_batch, plan.peak_lr) == (64, 1e-3)
    with pytest.raises(SeesawConfigError, match="has no train_batch_size: give"):
        configure_megatron_args(_args(seesaw_config=str(config), lr=1e-3))


def test_patch_entry_point_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        configure_args(_args(train_iters=100, _seesaw_explicit=()))
    assert stop.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("--seesaw-config: error: --train-iters 100")
    assert captured.out == ""
