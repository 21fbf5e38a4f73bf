"""Is a wheel folder complete for the GPU machine? (``bench/make_gpu_wheels.sh`` runs this.)

Every ``Requires-Dist`` of every wheel in the folder (markers evaluated for the target Python,
extras left out) must be met by a wheel in the folder or by a package the GPU machine already
has (``MACHINE``); the wheels must be for that Python (``py3`` or ``cpXY``) and Linux x86_64.
Exit 1 with one line per gap.

    python bench/gpu_check_wheels.py gpu_wheels [--python-version 3.12]
"""

from __future__ import annotations

import argparse
import email.parser
import re
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

# What the lent GPU machine has (its description, 2026-11); torch is its CUDA build.
MACHINE = {
    "torch": "2.11.0", "numpy": "2.1.0", "pyyaml": "6.0.2", "sentencepiece": "0.2.0",
    "tqdm": "4.67.0", "matplotlib": "3.9.0", "ninja": "1.11.1", "psutil": "6.1.0",
    "msgpack": "1.1.0", "py-cpuinfo": "9.0.0", "nvidia-ml-py": "12.560.30",
    "transformers": "4.46.0", "accelerate": "1.1.0", "pytest": "8.3.0",
    "hypothesis": "6.115.0", "triton": "3.5.0",
}


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))


def check(folder: Path, python_version: str) -> List[str]:
    major, minor = python_version.split(".")[:2]
    environment = {"python_version": f"{major}.{minor}", "python_full_version":
                   f"{major}.{minor}.0", "sys_platform": "linux", "platform_system": "Linux",
                   "platform_machine": "x86_64", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "os_name": "posix",
                   "extra": ""}
    provided: Dict[str, Version] = {name: Version(v) for name, v in MACHINE.items()}
    wheels, gaps = sorted(folder.glob("*.whl")), []
    for wheel in wheels:
        name, version, _, tags = parse_wheel_filename(wheel.name)
        provided[canonicalize_name(name)] = version  # the folder's copy shadows the machine's
        if not any(t.interpreter in ("py3", f"cp{major}{minor}") and
                   (t.platform == "any" or re.search(r"linux.*x86_64", t.platform))
                   for t in tags):
            gaps.append(f"{wheel.name}: not a wheel for CPython {major}.{minor} on Linux x86_64")
    for wheel in wheels:
        for line in _metadata(wheel).get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            have = provided.get(canonicalize_name(requirement.name))
            if have is None:
                gaps.append(f"{wheel.name} needs {requirement}: neither in the folder nor on "
                            "the GPU machine")
            elif not requirement.specifier.contains(have, prereleases=True):
                gaps.append(f"{wheel.name} needs {requirement}: found {have}")
    return gaps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--python-version", default="3.12")
    args = parser.parse_args(argv)
    gaps = check(Path(args.folder), args.python_version)
    for gap in gaps:
        print(f"gpu_check_wheels: {gap}", file=sys.stderr)
    if not gaps:
        count = len(list(Path(args.folder).glob("*.whl")))
        print(f"gpu_check_wheels: every requirement of the {count} wheels is in the folder or "
              f"on the GPU machine (Python {args.python_version})")
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
