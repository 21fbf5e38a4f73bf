"""Session fixtures of the ``seesaw_ds.train`` end-to-end tests.

``uninterrupted`` is the reference Seesaw run of ``test_train_resume.py``; it also prepares
the tiny corpus on rank 0 (the pipeline's first stage), which every other run reuses.
"""

from __future__ import annotations

import pytest

from train_common import (
    REFERENCE_CHECKPOINT,
    REFERENCE_EVAL,
    REFERENCE_TOTAL,
    ds_config,
    run_config,
    train,
    write_configs,
)


@pytest.fixture(scope="session")
def train_root(tmp_path_factory):
    return tmp_path_factory.mktemp("train_e2e")


@pytest.fixture(scope="session")
def uninterrupted(train_root):
    """The reference run (deepspeed launcher): prepares the data, trains, checkpoints."""
    prepared = train_root / "data"
    run_path, ds_path = write_configs(
        train_root / "seesaw", run_config(prepared, REFERENCE_EVAL, REFERENCE_CHECKPOINT),
        ds_config(REFERENCE_TOTAL))
    run = train(run_path, ds_path, train_root / "full", launcher="deepspeed")
    return {"run": run, "run_path": run_path, "ds_path": ds_path, "prepared": prepared}


@pytest.fixture(scope="session")
def prepared_dir(uninterrupted):
    return uninterrupted["prepared"]
