import os
import subprocess
import sys

import pytest
import torch

from seesaw_ds.data.gpt_data import build_gpt_datasets, check_split, fixed_validation_batches
from seesaw_ds.data.testing import TINY_SEQ, TINY_SPLIT, TINY_VOCAB
from seesaw_ds.distributed import free_port
from seesaw_ds.errors import SeesawConfigError


@pytest.fixture(scope="module")
def datasets(tiny_prepared):
    return build_gpt_datasets(tiny_prepared, TINY_SEQ, split=TINY_SPLIT)


def test_items_are_int64_sequences_with_shifted_labels(datasets):
    train, valid = datasets
    assert len(train) > 100 and len(valid) > 10
    for dataset in (train, valid):
        for index in (0, len(dataset) - 1):
            item = dataset[index]
            assert item["tokens"].shape == item["labels"].shape == (TINY_SEQ,)
            assert item["tokens"].dtype == item["labels"].dtype == torch.int64
            assert int(item["tokens"].max()) < TINY_VOCAB and int(item["tokens"].min()) >= 0
            assert torch.equal(item["tokens"][1:], item["labels"][:-1])


def test_validation_batches_are_fixed_across_builds(tiny_prepared, datasets, tmp_path):
    batches = fixed_validation_batches(datasets[1], batch_size=4, num_batches=3)
    assert len(batches) == 3 and batches[0]["tokens"].shape == (4, TINY_SEQ)
    _, valid_fresh = build_gpt_datasets(tiny_prepared, TINY_SEQ, split=TINY_SPLIT,
                                        cache_dir=str(tmp_path / "cache"))
    again = fixed_validation_batches(valid_fresh, batch_size=4, num_batches=3)
    for first, second in zip(batches, again):
        assert torch.equal(first["tokens"], second["tokens"])
        assert torch.equal(first["labels"], second["labels"])
    with pytest.raises(SeesawConfigError, match="num_batches"):
        fixed_validation_batches(datasets[1], batch_size=4, num_batches=10**6)


def test_train_samples_beyond_one_epoch_repeat_the_data(tiny_prepared, datasets):
    wanted = 3 * len(datasets[0])
    train, _ = build_gpt_datasets(tiny_prepared, TINY_SEQ, split=TINY_SPLIT,
                                  train_samples=wanted)
    assert len(train) >= wanted and train[wanted - 1]["tokens"].shape == (TINY_SEQ,)


def test_zero_document_split_is_refused_before_megatron(tiny_prepared, tmp_path):
    from seesaw_ds.data.prepare import prepare

    for index in range(10):
        (tmp_path / f"doc{index}.txt").write_text(f"x = {index}\n" * 200)
    small = prepare([str(tmp_path / "*.txt")], str(tmp_path / "out"), progress=False,
                    tokenizer_model=tiny_prepared.tokenizer_path, log=lambda message: None)
    # 10 documents: '98,2,0' gives valid documents round(9.8) = 10 .. 10, i.e. none;
    # megatron-core's builder would loop forever on it.
    with pytest.raises(SeesawConfigError,
                       match=r"valid split 0 of 10 documents .*larger share"):
        build_gpt_datasets(small, TINY_SEQ, split="98,2,0")
    train, valid = build_gpt_datasets(small, TINY_SEQ, split="80,20,0")
    assert len(train) > 0 and len(valid) > 0


def test_split_with_too_few_tokens_for_one_sequence():
    with pytest.raises(SeesawConfigError, match=r"valid split 1 of 4 documents \(30 tokens\)"):
        check_split([100, 100, 100, 30], 64, [(0.0, 0.75), (0.75, 1.0), None], "75,25,0")
    infos = check_split([100, 100, 100, 65], 64, [(0.0, 0.75), (0.75, 1.0), None])
    assert [(info.name, info.num_documents, info.num_tokens) for info in infos] == [
        ("train", 3, 300), ("valid", 1, 65)]


@pytest.mark.parametrize("split", ["98-2", "100,0,0", "a,b,c", "1,2,3,4"])
def test_bad_split_strings(tiny_prepared, split):
    with pytest.raises(SeesawConfigError, match="split"):
        build_gpt_datasets(tiny_prepared, TINY_SEQ, split=split)


def test_bad_lengths(tiny_prepared):
    with pytest.raises(SeesawConfigError, match="seq_length"):
        build_gpt_datasets(tiny_prepared, 0, split=TINY_SPLIT)
    with pytest.raises(SeesawConfigError, match="train_samples"):
        build_gpt_datasets(tiny_prepared, TINY_SEQ, split=TINY_SPLIT, train_samples=0)


def test_two_gloo_ranks_build_the_same_datasets(tiny_prepared, tmp_path):
    worker = os.path.join(os.path.dirname(__file__), "dist_build_worker.py")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1",
               MASTER_PORT=str(free_port()),
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    cache = str(tmp_path / "cache")
    procs = [subprocess.Popen(
        [sys.executable, worker, tiny_prepared.out_dir, cache, str(TINY_SEQ), TINY_SPLIT],
        env=dict(env, RANK=str(rank)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in range(2)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        outputs.append(out.strip().splitlines()[-1].split(" ", 1))
    assert [rank for rank, _ in outputs] == ["rank0", "rank1"]
    assert outputs[0][1] == outputs[1][1]
    # One index cache per split, built once (by rank 0), shared by both ranks.
    assert sum(name.endswith("shuffle_index.npy") for name in os.listdir(cache)) == 2
