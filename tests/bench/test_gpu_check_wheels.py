"""``bench/gpu_check_wheels.py``: the wheel folder for the GPU machine is closed under its
requirements (given what that machine has), and every wheel fits its Python."""

import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from gpu_check_wheels import check  # noqa: E402


def _wheel(folder: Path, filename: str, requires=()) -> None:
    name, version = filename.split("-")[:2]
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *[f"Requires-Dist: {r}" for r in requires]]
    with zipfile.ZipFile(folder / filename, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")


def test_a_closed_folder_passes(tmp_path):
    _wheel(tmp_path, "deepspeed-0.19.8-py3-none-any.whl",
           ["torch>=2.0", "pydantic>=2", "numpy", "einops; extra == 'dev'",
            "pywin32; sys_platform == 'win32'"])
    _wheel(tmp_path, "pydantic-2.14.4-py3-none-any.whl", ["pydantic-core==2.50.5"])
    _wheel(tmp_path, "pydantic_core-2.50.5-cp312-cp312-manylinux_2_17_x86_64.whl")
    assert check(tmp_path, "3.12") == []


def test_gaps_are_named(tmp_path):
    _wheel(tmp_path, "deepspeed-0.19.8-py3-none-any.whl", ["hjson", "torch>=2.12"])
    _wheel(tmp_path, "pydantic_core-2.50.5-cp311-cp311-manylinux_2_17_x86_64.whl")
    gaps = check(tmp_path, "3.12")
    assert gaps == [
        "pydantic_core-2.50.5-cp311-cp311-manylinux_2_17_x86_64.whl: not a wheel for CPython "
        "3.12 on Linux x86_64",
        "deepspeed-0.19.8-py3-none-any.whl needs hjson: neither in the folder nor on the GPU "
        "machine",
        "deepspeed-0.19.8-py3-none-any.whl needs torch>=2.12: found 2.11.0"]
