"""The divergence policy: N bad steps in a row stop the run; a good step resets the count."""

from __future__ import annotations

import math

import pytest

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.run_config import parse_run_config
from seesaw_ds.training.divergence import DivergencePolicy, DivergenceSettings


def _feed(policy, losses, skipped=()):
    """The 1-based step at which the policy says stop, or None."""
    for step, loss in enumerate(losses, start=1):
        if policy.observe(step, loss, skipped=step in skipped):
            return step
    return None


def test_non_finite_losses_stop_after_max_bad_steps_in_a_row():
    policy = DivergencePolicy()  # default: 3
    assert _feed(policy, [5.0, 4.0, math.nan, math.inf, math.nan, 1.0]) == 5
    assert policy.reason == ("3 bad steps in a row (steps 3-5; last: loss nan), "
                             "divergence.max_bad_steps = 3")
    assert not policy.safe_to_save


def test_a_good_step_resets_the_count_and_allows_saving_again():
    policy = DivergencePolicy(DivergenceSettings(max_bad_steps=2))
    assert _feed(policy, [5.0, math.nan, 4.0, math.nan, 3.0, math.nan]) is None
    assert policy.bad_steps == 3 and policy.bad_in_a_row == 1 and not policy.safe_to_save
    policy.observe(7, 2.0)
    assert policy.safe_to_save


def test_spikes_count_only_when_configured_and_the_window_is_full():
    losses = [4.0] * 4 + [13.0, 13.0]
    assert _feed(DivergencePolicy(DivergenceSettings(max_bad_steps=2)), losses) is None
    spiky = DivergencePolicy(DivergenceSettings(max_bad_steps=2, spike_factor=3.0,
                                                spike_window=4))
    assert _feed(spiky, losses) == 6
    assert "loss 13 > divergence.spike_factor 3 x the mean 4 of the last 4 good steps" in \
        spiky.reason
    early = DivergencePolicy(DivergenceSettings(max_bad_steps=1, spike_factor=3.0,
                                                spike_window=4))
    assert _feed(early, [4.0, 13.0]) is None  # too few good steps to judge a spike


def test_steps_deepspeed_skipped_are_counted_not_judged():
    policy = DivergencePolicy(DivergenceSettings(max_bad_steps=1))
    assert _feed(policy, [5.0, math.nan, math.nan, 4.0], skipped={2, 3}) is None
    assert policy.summary() == {"bad_steps": 0, "bad_in_a_row": 0,
                                "deepspeed_skipped_steps": 2}


def test_state_round_trips_through_a_checkpoint():
    settings = DivergenceSettings(max_bad_steps=1, spike_factor=2.0, spike_window=2)
    policy = DivergencePolicy(settings)
    _feed(policy, [3.0, 5.0])
    resumed = DivergencePolicy(settings)
    resumed.load_state_dict(policy.state_dict())
    assert resumed.observe(3, 9.0) and policy.observe(3, 9.0)  # same window, same verdict


def test_the_run_config_section_has_defaults_and_refuses_bad_values():
    assert parse_run_config({}).divergence == DivergenceSettings(3, None, 20)
    assert parse_run_config({"divergence": {"spike_factor": 4}}).divergence.spike_factor == 4
    for raw, needle in [({"max_bad_steps": 0}, "divergence.max_bad_steps = 0 must be"),
                        ({"max_bad_steps": True}, "divergence.max_bad_steps = True"),
                        ({"spike_factor": 1.0}, "divergence.spike_factor = 1.0 must be a "
                                                "number > 1"),
                        ({"spike_factor": "3"}, "divergence.spike_factor = '3'"),
                        ({"spike_windw": 3}, "divergence.spike_windw is not a known key")]:
        with pytest.raises(SeesawConfigError, match=needle.replace(".", r"\.")
                           .replace("(", r"\(")):
            parse_run_config({"divergence": raw})
