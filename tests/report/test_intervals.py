"""95% t intervals on paired differences and the wording they allow."""

from __future__ import annotations

import math

import pytest

from seesaw_ds.report.intervals import mean_interval, t_critical, verdict


def test_t_critical_matches_the_table_and_tends_to_the_normal():
    assert t_critical(1) == 12.706
    assert t_critical(2) == 4.303  # three seeds need t > 4.30
    assert t_critical(4) == 2.776  # five seeds
    assert t_critical(30) == 2.042
    assert 1.96 < t_critical(200) < 1.98
    with pytest.raises(ValueError, match="df >= 1"):
        t_critical(0)


def test_mean_interval_of_five_values():
    values = [0.01, 0.02, 0.03, 0.04, 0.05]
    interval = mean_interval(values)
    half = 2.776 * math.sqrt(2.5e-4) / math.sqrt(5)  # sample sd of 1..5 (x0.01) = sqrt(2.5)
    assert interval.n == 5 and math.isclose(interval.mean, 0.03)
    assert math.isclose(interval.low, 0.03 - half) and math.isclose(interval.high, 0.03 + half)
    assert interval.excludes_zero()


def test_one_value_has_no_interval_and_no_claim():
    interval = mean_interval([0.5])
    assert interval.n == 1 and math.isnan(interval.low) and not interval.excludes_zero()
    assert verdict(interval) == "no measurable difference"


def test_verdict_only_where_the_interval_excludes_zero():
    assert verdict(mean_interval([-0.02, -0.01, -0.015])) == "lower loss"
    assert verdict(mean_interval([0.02, 0.01, 0.015])) == "higher loss"
    # three seeds at t = -2.6: not a claim at 95% (df 2 needs t > 4.30)
    assert verdict(mean_interval([-0.01, -0.002, -0.006])) == "no measurable difference"
