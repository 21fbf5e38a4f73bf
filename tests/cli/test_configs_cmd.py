"""The example configs ship inside the package (``seesaw-ds configs list|copy``), a built
wheel holds them byte for byte, and ``seesaw-ds --version`` reads the package metadata."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import seesaw_ds
from seesaw_ds.cli.configs_cmd import packaged_configs
from seesaw_ds.cli.main import main
from seesaw_ds.config import load_config_file, plan_from_ds_config

REPO = Path(__file__).resolve().parents[2]
DS_CONFIGS = sorted(p.name for p in (REPO / "ds_configs").glob("*.json"))
RUN_CONFIGS = sorted(p.name for p in (REPO / "launch" / "run_configs").glob("*.yaml"))


def test_package_folders_are_the_repository_folders():
    # one set of files: the package folders link to ds_configs/ and launch/run_configs/
    assert os.readlink(REPO / "seesaw_ds" / "configs") == "../ds_configs"
    assert os.readlink(REPO / "seesaw_ds" / "run_configs") == "../launch/run_configs"
    configs = packaged_configs()
    assert sorted(configs) == sorted(DS_CONFIGS + RUN_CONFIGS) and len(DS_CONFIGS) == 24
    assert {kind for _, kind in configs.values()} == {"DeepSpeed config", "run config"}


def test_configs_list_and_copy(tmp_path, capsys):
    assert main(["configs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(DS_CONFIGS) + len(RUN_CONFIGS)
    assert ("150m_b128_seesaw.json           DeepSpeed config  batch seesaw, LR cosine, B0 "
            "128, seq 1024, 3.3e+09 tokens, ZeRO 1") in lines
    assert ("tiny.yaml                       run config        Tiny CPU reproduction: the "
            "embedded standard-library corpus, a 1.3M-parameter GPT") in lines
    # a copied config is the repository's file and plans like it
    assert main(["configs", "copy", "tiny_seesaw", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"configs: wrote {tmp_path / 'tiny_seesaw.json'}\n"
    assert filecmp.cmp(tmp_path / "tiny_seesaw.json", REPO / "ds_configs" / "tiny_seesaw.json",
                       shallow=False)
    plan = plan_from_ds_config(load_config_file(str(tmp_path / "tiny_seesaw.json")), 2)
    assert plan.optimizer_steps > 0
    assert main(["configs", "copy", "tiny.yaml", str(tmp_path / "run.yaml")]) == 0
    capsys.readouterr()
    # an existing file is kept without --force; an unknown name lists the known ones
    assert main(["configs", "copy", "tiny_seesaw", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"seesaw-ds: error: configs copy: {tmp_path / 'tiny_seesaw.json'} exists; pass "
        "--force to overwrite it, or name another DEST.\n")
    assert main(["configs", "copy", "tiny_seesaw", str(tmp_path), "--force"]) == 0
    assert main(["configs", "copy", "tiny_seesawz", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no packaged config named 'tiny_seesawz'" in err[0]
    assert err[0].endswith(", tiny_seesaw, tiny_seesaw_guard).")


def test_version_comes_from_package_metadata(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"seesaw-ds {metadata.version('seesaw-ds')}\n"
    assert metadata.version("seesaw-ds") == seesaw_ds.__version__


def _source_copy(destination: Path) -> Path:
    """The files a wheel is built from (no virtual environment, outputs or build leftovers)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "results", "build", "dist", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".hypothesis", "tests",
                                    "bench")
    shutil.copytree(REPO, destination, symlinks=True, ignore=ignore)
    return destination


def _can_build_here() -> bool:
    """This environment builds wheels itself: setuptools >= 70.1 (bdist_wheel built in) or
    the ``wheel`` package (otherwise pip's build isolation fetches them)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    version = tuple(int(part) for part in metadata.version("setuptools").split(".")[:2])
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def test_built_wheel_contains_the_configs(tmp_path):
    source = _source_copy(tmp_path / "src")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
               str(tmp_path / "dist"), str(source)]
    if _can_build_here():
        command.insert(4, "--no-build-isolation")  # offline and fast with the venv's own
    subprocess.run(command, check=True, capture_output=True, text=True)
    (wheel,) = (tmp_path / "dist").glob("seesaw_ds-*.whl")
    assert wheel.name == f"seesaw_ds-{seesaw_ds.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in DS_CONFIGS:
            assert archive.read(f"seesaw_ds/configs/{name}") == (
                REPO / "ds_configs" / name).read_bytes(), name
        for name in RUN_CONFIGS:
            assert archive.read(f"seesaw_ds/run_configs/{name}") == (
                REPO / "launch" / "run_configs" / name).read_bytes(), name
        assert "seesaw_ds/cli/configs_cmd.py" in names
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "seesaw-ds = seesaw_ds.cli.main:main" in archive.read(entry_points).decode()
    json.loads((REPO / "ds_configs" / DS_CONFIGS[0]).read_text())  # the repository's are JSON
