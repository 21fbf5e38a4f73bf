"""Megatron-LM under --seesaw-config on a user's real command line (issue 16).

Pipeline schedules that refuse micro-batch counts, features that freeze the count, resume
that refuses what it cannot honour, every conflict at once, save/eval spacing in tokens.
The namespaces carry what validate_args has set when the patch calls configure_megatron_args;
the same paths through Megatron-LM's own parser: patches/check_megatron_lm.sh.
"""

import json
import os
from types import SimpleNamespace

import pytest
import torch

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.megatron_adapter import (
    SeesawParamScheduler,
    configure_megatron_args,
    plan_from_megatron_args,
)
from seesaw_ds.megatron_adapter.args import interval_crossed
from seesaw_ds.megatron_adapter.pipeline import PipelineSchedule

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_150M = os.path.join(ROOT, "ds_configs", "150m_b256_seesaw.json")


def _args(**overrides):
    values = dict(
        seesaw_config=CONFIG_150M, seq_length=1024, micro_batch_size=2, data_parallel_size=8,
        gtp_weight_remat_size=1, global_batch_size=None,
        _is_global_batch_size_explicitly_specified=False, lr=None, weight_decay=0.01,
        adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, train_iters=None,
        train_samples=None, rampup_batch_size=None, rank=0, pipeline_model_parallel_size=1,
        num_layers=12, eval_interval=1000, save_interval=None, save=None,
        cuda_graph_impl="none", hybrid_context_parallel=False,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


def _config(tmp_path, **seesaw):
    with open(CONFIG_150M) as handle:
        config = json.load(handle)
    config["seesaw"].update(seesaw)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


# ---- 1. interleaved pipeline parallelism -------------------------------------------------


def _megatron_interleaved_accepts(count, pp, group):
    """forward_backward_pipelining_with_interleaving's two checks, as written there."""
    if group > count or group < pp:
        return False
    final = count % group
    return not 0 < final < pp


@pytest.mark.parametrize("pp, group", [(2, 2), (2, 3), (4, 4), (3, 5), (4, 6)])
def test_pipeline_schedule_accepts_exactly_the_counts_megatron_accepts(pp, group):
    schedule = PipelineSchedule(pp=pp, vpp=2, group=group)
    for count in range(1, 40):
        assert (schedule.rejects(count) is None) == _megatron_interleaved_accepts(
            count, pp, group), count
    assert all(PipelineSchedule(pp=pp).rejects(count) is None for count in range(1, 40))


def test_150m_b256_pp2_with_virtual_stages_dp8_plans_only_even_micro_batch_counts():
    lines = []
    args = _args(pipeline_model_parallel_size=2, num_virtual_stages_per_pipeline_rank=2)
    plan = configure_megatron_args(args, log=lines.append)
    counts = [setting.global_batch // 16 for _, _, setting in plan.iter_steps()]
    assert len(counts) == plan.optimizer_steps
    assert all(count % 2 == 0 for count in counts)  # the unrounded plan has 2,077 odd ones
    assert plan.batch_multiple == 32 and plan.initial_batch == 256
    assert "batch multiple 16 raised to 32 for the interleaved schedule (PP 2, 2 virtual " \
        "stages" in lines[0]
    flat = configure_megatron_args(_args(pipeline_model_parallel_size=2))  # 1F1B: any count
    assert flat.batch_multiple == 16
    assert sum(1 for _, _, s in flat.iter_steps() if (s.global_batch // 16) % 2) == 2077


def test_interleaved_layout_the_plan_cannot_round_to_is_one_error_before_any_work():
    with pytest.raises(SeesawConfigError) as error:  # group 3: batches of 48k; 256 is not
        configure_megatron_args(_args(pipeline_model_parallel_size=2,
                                      num_virtual_stages_per_pipeline_rank=2,
                                      microbatch_group_size_per_vp_stage=3))
    assert "train_batch_size = 256 is not a multiple of 48" in str(error.value)
    with pytest.raises(SeesawConfigError, match="group-size-per-virtual-pipeline-stage 1 is "
                       "below the pipeline-parallel size 2"):
        configure_megatron_args(_args(pipeline_model_parallel_size=2,
                                      num_layers_per_virtual_pipeline_stage=3,
                                      microbatch_group_size_per_vp_stage=1))


def test_a_step_batch_the_user_wrote_that_gives_a_refused_count_names_the_step(tmp_path):
    config = tmp_path / "step.yaml"
    config.write_text("seesaw:\n  total_tokens: 1.0e8\n  seq_length: 1024\n"
                      "  batch_schedule: step\n  batch_steps: [[5.0e7, 80]]\n"
                      "  lr_schedule: {type: cosine}\n")
    args = _args(seesaw_config=str(config), global_batch_size=64, lr=1e-3,
                 _is_global_batch_size_explicitly_specified=True,
                 pipeline_model_parallel_size=2, num_virtual_stages_per_pipeline_rank=2)
    with pytest.raises(SeesawConfigError) as error:
        configure_megatron_args(args)
    assert "80" in str(error.value) and "multiple" in str(error.value)


# ---- 2. features that freeze the micro-batch count ---------------------------------------


@pytest.mark.parametrize("overrides, written, flag", [
    (dict(cuda_graph_impl="full_iteration"), ("cuda_graph_impl",),
     "--cuda-graph-impl full_iteration"),
    (dict(cuda_graph_impl="transformer_engine"), ("cuda_graph_impl",),
     "--cuda-graph-impl transformer_engine"),
    (dict(cuda_graph_impl="local"), ("enable_cuda_graph",), "--enable-cuda-graph"),
    (dict(cuda_graph_impl="transformer_engine"), ("external_cuda_graph",),
     "--external-cuda-graph"),
    (dict(hybrid_context_parallel=True), ("hybrid_context_parallel",),
     "--hybrid-context-parallel"),
    (dict(perform_rl_step=True), ("perform_rl_step",), "--perform-rl-step"),
])
def test_features_that_freeze_the_micro_batch_count_are_refused_by_name(
        overrides, written, flag):
    with pytest.raises(SeesawConfigError) as error:
        configure_megatron_args(_args(**overrides), explicit=written)
    assert str(error.value).startswith(f"{flag} cannot be combined with --seesaw-config")


# ---- 3. resume ------------------------------------------------------------------------------


def _scheduler(plan, **kwargs):
    weights = [torch.nn.Parameter(torch.zeros(2)) for _ in range(2)]
    optimizer = torch.optim.AdamW([
        {"params": [weights[0]], "max_lr": plan.peak_lr},
        {"params": [weights[1]], "max_lr": plan.peak_lr / 2},  # --decoupled-lr
    ], lr=0.0)
    return optimizer, SeesawParamScheduler(optimizer, plan, **kwargs)


def test_a_changed_peak_lr_is_another_plan_and_is_refused(tmp_path):
    old = plan_from_megatron_args(_args(lr=0.003, global_batch_size=256))
    new = plan_from_megatron_args(_args(lr=0.0015, global_batch_size=256))
    _, saved = _scheduler(old)
    saved.set_consumed_samples(1_000_000)
    _, resumed = _scheduler(new)
    with pytest.raises(SeesawConfigError, match="different seesaw plan.*peak lr"):
        resumed.load_state_dict(saved.state_dict())
    assert old.fingerprint() != new.fingerprint()


def test_the_optimizer_state_of_another_peak_cannot_move_the_lr():
    plan = plan_from_megatron_args(_args(lr=0.003, global_batch_size=256))
    optimizer, scheduler = _scheduler(plan)
    for group in optimizer.param_groups:  # what a checkpoint's optimizer state restores
        group["max_lr"] *= 2
    scheduler.set_consumed_samples(2_000_000)
    expected = plan.at_samples(2_000_000).lr
    assert [group["lr"] for group in optimizer.param_groups] == [expected, expected / 2]


def test_a_checkpoint_without_seesaw_state_is_refused_unless_joined_explicitly():
    plan = plan_from_megatron_args(_args(lr=0.003, global_batch_size=256))
    megatron_state = {"max_lr": 0.003, "min_lr": 0.0, "num_steps": 1_500_000,
                      "lr_warmup_steps": 0, "lr_decay_steps": 3_000_000,
                      "lr_decay_style": "cosine"}
    _, scheduler = _scheduler(plan)
    with pytest.raises(SeesawConfigError, match="no seesaw plan .*--seesaw-join-checkpoint"):
        scheduler.load_state_dict(megatron_state)
    optimizer, joined = _scheduler(plan, join_checkpoint=True)
    joined.load_state_dict(megatron_state)
    assert joined.num_steps == 1_500_000
    assert optimizer.param_groups[0]["lr"] == plan.at_samples(1_500_000).lr


def test_patch_scheduler_refusal_inside_load_checkpoint_is_one_line_exit_2(capsys):
    pytest.importorskip("megatron.core")
    from megatron.core import num_microbatches_calculator as calculators

    from seesaw_ds.megatron_adapter.megatron_lm import build_param_scheduler, install

    args = _args(_seesaw_explicit=())
    configure_megatron_args(args)
    try:
        install(args)
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=0.0)
        scheduler = build_param_scheduler(optimizer, args)
        with pytest.raises(SystemExit) as stop:
            scheduler.load_state_dict({"num_steps": 10, "max_lr": 0.003})
    finally:
        calculators.destroy_num_microbatches_calculator()
    assert stop.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "--seesaw-join-checkpoint" in lines[0]


# ---- 4. every conflict at once ------------------------------------------------------------


def test_every_conflict_is_reported_at_once_in_one_line():
    args = _args(lr_decay_style="linear", min_lr=0.0, weight_decay=0.01, train_iters=100,
                 cuda_graph_impl="full_iteration")
    written = ("lr_decay_style", "min_lr", "weight_decay", "train_iters", "cuda_graph_impl")
    with pytest.raises(SeesawConfigError) as error:
        configure_megatron_args(args, explicit=written)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("5 conflicts with --seesaw-config, all listed: (1) "
                              "--lr-decay-style cannot be combined")
    for part in ("(2) --min-lr cannot", "(3) --cuda-graph-impl full_iteration cannot",
                 "(4) --weight-decay 0.01 differs from the config's "
                 "optimizer.params.weight_decay = 0.0", "(5) --train-iters 100 differs"):
        assert part in message, message


def test_a_written_flag_at_megatrons_default_that_disagrees_is_an_error_not_replaced():
    with pytest.raises(SeesawConfigError, match=r"^--weight-decay 0\.01 differs"):
        configure_megatron_args(_args(weight_decay=0.01), explicit=("weight_decay",))
    args = _args(weight_decay=0.01)  # not written: the config's value
    configure_megatron_args(args)
    assert args.weight_decay == 0.0


# ---- 5. save and eval spacing in tokens ---------------------------------------------------


def test_interval_crossed_is_true_once_per_multiple():
    ends, batch, every = range(256, 10_000, 256), 256, 1000
    assert [end for end in ends if interval_crossed(end, batch, every)] == [
        1024, 2048, 3072, 4096, 5120, 6144, 7168, 8192, 9216]


def test_token_intervals_replace_iteration_counts_and_conflict_with_the_flags(tmp_path):
    config = _config(tmp_path, save_interval_tokens="1B", eval_interval_tokens=2.5e8)
    args = _args(seesaw_config=config, save="ckpt")
    configure_megatron_args(args)
    assert args.seesaw_save_interval_samples == 976_563  # ceil(1e9 / 1024)
    assert args.seesaw_eval_interval_samples == 244_141
    assert (args.save_interval, args.eval_interval) == (3815, 954)  # at the initial batch
    with pytest.raises(SeesawConfigError, match="--eval-interval 1000 and "
                       "seesaw.eval_interval_tokens = 250000000.0 both set the spacing"):
        configure_megatron_args(_args(seesaw_config=config), explicit=("eval_interval",))


def test_iteration_intervals_print_their_token_spacing_at_start_up():
    lines = []
    configure_megatron_args(_args(save="ckpt", save_interval=1000), log=lines.append)
    assert lines[1:] == [
        "[seesaw] --save-interval 1000 counts iterations: every 2.621e+08 tokens at batch "
        "256, every 2.589e+09 at batch 2528; set seesaw.save_interval_tokens to keep the "
        "spacing in tokens.",
        "[seesaw] --eval-interval 1000 counts iterations: every 2.621e+08 tokens at batch "
        "256, every 2.589e+09 at batch 2528; set seesaw.eval_interval_tokens to keep the "
        "spacing in tokens."]


def test_a_stage_the_layout_cannot_run_is_one_line_at_configure_time(tmp_path, capsys):
    from seesaw_ds.megatron_adapter.megatron_lm import configure_args

    config = _config(tmp_path, batch_multiple_stages=[{"from_tokens": 1.0e9, "multiple": 24}])
    with pytest.raises(SystemExit) as stop:  # a stage of multiple 24 on micro 2 x 8 ranks
        configure_args(_args(seesaw_config=config, _seesaw_explicit=()))
    assert stop.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("--seesaw-config: error: the plan's batch")
