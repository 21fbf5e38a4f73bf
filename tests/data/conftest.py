"""Shared data fixture: one tiny prepared folder per test session (see
``seesaw_ds.data.testing``; use ``TINY_SPLIT`` with it)."""

from __future__ import annotations

import pytest

from seesaw_ds.data.testing import make_tiny_prepared


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    return make_tiny_prepared(tmp_path_factory.mktemp("tiny_prepared"))
