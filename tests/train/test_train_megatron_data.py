"""``seesaw_ds.train`` on existing Megatron data (``data.paths``): a weighted blend of two
prefixes written by megatron-core's builder trains end to end; a vocabulary that does not fit
the data is refused with one line before any process group."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy
import torch.distributed as dist

from seesaw_ds.data.testing import make_tiny_prepared
from seesaw_ds.train import main
from train_common import ds_config, train, write_configs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_megatron_blend import A_IDS, B_IDS, write_prefix  # noqa: E402


def _run_config(paths, model):
    return {"model": {"shape": "micro"},
            "data": {"paths": paths, "tokenizer_model": model, "split": "90,10,0"},
            "eval": {"interval_tokens": 1e4, "batches": 2, "batch_size": 8}, "seed": 0}


def test_a_run_trains_from_a_weighted_blend_of_megatron_prefixes(tmp_path):
    model = make_tiny_prepared(tmp_path / "tok").tokenizer_path
    a = write_prefix(tmp_path / "a_text_document", A_IDS, seed=1)
    b = write_prefix(tmp_path / "b_text_document", B_IDS, seed=2)
    run_path, ds_path = write_configs(tmp_path / "cfg", _run_config([0.25, a, 0.75, b], model),
                                      ds_config(2.0e4))
    run = train(run_path, ds_path, tmp_path / "out", nproc=1)
    summary = run.summary
    assert summary["finished"] and summary["tokens"] >= 2.0e4
    assert [point["tokens"] for point in run.curve][0] == 0 and len(run.curve) >= 2
    # megatron-core's index cache went to <output_dir>/data_cache
    assert list((tmp_path / "out" / "data_cache").rglob("*.npy"))


def test_a_vocabulary_mismatch_is_refused_before_any_process_group(tmp_path, capsys):
    model = make_tiny_prepared(tmp_path / "tok").tokenizer_path
    wide = write_prefix(tmp_path / "wide", A_IDS, documents=20, dtype=numpy.int32)
    run_path, ds_path = write_configs(tmp_path / "cfg", _run_config([wide], model),
                                      ds_config(2.0e4))
    argv = ["--run-config", str(run_path), "--deepspeed_config", str(ds_path),
            "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"seesaw-ds train: error: data.paths: {wide}.idx stores int32 token ids (written for "
        f"a vocabulary of 65500 or more) but data.tokenizer_model {model} has 512 ids "
        "(uint16): the data was tokenized with another tokenizer; give the one that wrote it."]
    assert not dist.is_initialized() and not (tmp_path / "out").exists()
    config = json.loads(run_path.read_text())
    config["data"]["inputs"] = ["x.txt"]
    run_path.write_text(json.dumps(config))
    assert main(argv) == 2
    assert "data.inputs and data.paths exclude each other" in capsys.readouterr().err
