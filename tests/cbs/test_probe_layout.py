"""Which samples the small-batch probe measures: every chunk once, on any rank layout."""

import pytest

from seesaw_ds.cbs.probe_layout import ProbeSize, probe_chunks


def _measured(size, dp_size, micro_batch):
    """chunk -> (rank, row) over all ranks."""
    seen = {}
    for rank in range(dp_size):
        for chunk, row in probe_chunks(size, dp_size, rank, micro_batch):
            assert chunk not in seen, (chunk, seen)
            seen[chunk] = (rank, row)
    return seen


def test_the_starting_layout_measures_each_ranks_first_micro_batch():
    assert _measured(ProbeSize(4, 8), 8, 4) == {r: (r, 0) for r in range(8)}


def test_two_ranks_resumed_on_one_measure_the_second_chunk_from_the_dataset():
    assert _measured(ProbeSize(2, 2), 1, 2) == {0: (0, 0), 1: (0, None)}
    assert _measured(ProbeSize(2, 2), 1, 4) == {0: (0, 0), 1: (0, 2)}  # a bigger micro-batch


def test_one_rank_resumed_on_two_measures_on_rank_zero_only():
    assert _measured(ProbeSize(2, 1), 2, 2) == {0: (0, 0)}
    assert _measured(ProbeSize(4, 1), 2, 2) == {0: (0, None)}  # no rank holds 4 samples


@pytest.mark.parametrize("chunk_samples, chunks", [(1, 1), (2, 3), (3, 4), (4, 2), (8, 5)])
@pytest.mark.parametrize("dp_size, micro_batch", [(1, 1), (1, 6), (2, 2), (3, 4), (4, 3),
                                                  (8, 1)])
def test_every_layout_measures_every_chunk_exactly_once(chunk_samples, chunks, dp_size,
                                                        micro_batch):
    size = ProbeSize(chunk_samples, chunks)
    seen = _measured(size, dp_size, micro_batch)
    assert sorted(seen) == list(range(chunks))
    for chunk, (rank, row) in seen.items():
        if row is not None:  # the rows are the chunk's samples of this rank's micro-batch
            assert rank * micro_batch + row == chunk * chunk_samples
            assert row + chunk_samples <= micro_batch


def test_the_size_round_trips_and_refuses_nonsense():
    size = ProbeSize(2, 3)
    assert ProbeSize.from_dict(size.to_dict()) == size and size.samples == 6
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="positive integer"):
            ProbeSize(bad, 1)
