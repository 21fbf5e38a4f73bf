"""The sample order: a keyed bijection, O(1) memory at any size, pinned across versions."""

import itertools
import tracemalloc
from collections import Counter

import pytest

from seesaw_ds.deepspeed_adapter import GlobalSampleOrder
from seesaw_ds.deepspeed_adapter.permutation import KeyedPermutation, splitmix64
from seesaw_ds.errors import SeesawConfigError


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 50, 1000, 4097])
def test_every_index_exactly_once_per_epoch(n):
    for seed, epoch in itertools.product((0, 1234, 2**63 + 5), (0, 1, 17)):
        permutation = KeyedPermutation(n, seed, epoch)
        assert sorted(permutation[i] for i in range(n)) == list(range(n))


def test_golden_values_pin_the_order():
    """Changing these numbers changes every run's sample order: bump SAMPLE_ORDER_VERSION."""
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert GlobalSampleOrder(1000, seed=1234).take(0, 10) == [
        701, 60, 290, 688, 906, 118, 190, 361, 347, 899]
    assert GlobalSampleOrder(1000, seed=1234).take(1000, 5) == [24, 826, 493, 498, 37]
    big = GlobalSampleOrder(10**9, seed=1234)
    assert [big[i] for i in (0, 1, 2, 123_456_789, 999_999_999)] == [
        681623165, 190759283, 14441327, 391816173, 60630767]
    assert big.take(3 * 10**9 + 999_000_000, 3) == [501565254, 654624578, 296697902]


def test_a_billion_samples_allocate_nothing_large():
    order = GlobalSampleOrder(10**9, seed=1234)
    tracemalloc.start()
    try:
        drawn = []
        for offset in (0, 123_456_789, 999_999_000, 5 * 10**9 + 700_000_000):
            drawn.extend(order.take(offset, 1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak
    assert len(drawn) == 4000 and all(0 <= i < 10**9 for i in drawn)
    assert len(set(drawn[:3000])) == 3000  # one epoch: no repeats


def test_all_orders_of_three_are_reachable_and_balanced():
    counts = Counter(
        tuple(KeyedPermutation(3, seed, 0)[i] for i in range(3)) for seed in range(600)
    )
    assert len(counts) == 6
    assert all(60 <= c <= 140 for c in counts.values()), counts


def test_epochs_and_seeds_give_other_orders_and_bad_sizes_are_refused():
    first = [KeyedPermutation(100, 5, 0)[i] for i in range(100)]
    assert first != [KeyedPermutation(100, 5, 1)[i] for i in range(100)]
    assert first != [KeyedPermutation(100, 6, 0)[i] for i in range(100)]
    with pytest.raises(ValueError):
        KeyedPermutation(0, 1)
    with pytest.raises(IndexError):
        KeyedPermutation(10, 1)[10]


def test_a_checkpoint_of_another_sample_order_is_refused():
    import torch

    from dsa_common import tiny_config
    from seesaw_ds.config import plan_from_ds_config
    from seesaw_ds.deepspeed_adapter import SeesawDataLoader

    data = [{"x": torch.tensor(i)} for i in range(50)]
    loader = SeesawDataLoader(data, plan_from_ds_config(tiny_config(), 2), 0, 2, data_seed=7)
    saved = loader.state_dict()
    assert saved["sample_order"] == "feistel64-v1"
    loader.load_state_dict(saved)
    del saved["sample_order"]  # written before the keyed bijection (NumPy's Generator)
    with pytest.raises(SeesawConfigError, match=r"sample order is 'numpy-default_rng'.*"
                                                r"allow_plan_change"):
        loader.load_state_dict(saved)
