"""Whether the wheels in a folder install a working set on a lent GPU machine: every package's
requirements, for each Python the machine may have, met by another wheel there or by what the
machine has installed. `python -m bench.device_wheels .whl` (bench/device-wheels.sh runs it),
so a missing wheel stops here, not on the machine's few minutes: importlib_metadata 10 came
to need lazy_importer, which only Python 3.11 imports (dask takes importlib.metadata from 3.12).
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

PYTHONS = ("3.11", "3.12", "3.13")
# What a lent machine has (DEVELOPERS' guide: torch with CUDA, numba, scipy, scikit-image,
# tifffile), with what those bring: none of it travels.
ON_THE_MACHINE = {"numpy", "torch", "numba", "scipy", "scikit-image", "tifffile", "llvmlite"}


def requirements(wheel: Path) -> list[Requirement]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(archive.read(name).decode())
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def fits(wheel: Path, python: str) -> bool:
    """Whether the wheel installs on CPython `python` (a pure wheel on any Python 3)."""
    tags = parse_wheel_filename(wheel.name)[3]
    interpreter = "cp" + python.replace(".", "")
    return any(tag.interpreter in ("py3", interpreter) for tag in tags)


def marker_environment(python: str) -> dict[str, str]:
    """What requirement markers see on a lent machine (x86-64 Linux, CPython `python`)."""
    return default_environment() | {
        "python_version": python, "python_full_version": f"{python}.0",
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
        "extra": "",
    }  # fmt: skip


def missing(folder: Path, pythons=PYTHONS, provided=ON_THE_MACHINE) -> list[str]:
    """One line for each package without a wheel for a Python, and each requirement, per Python,
    that no fitting wheel in `folder` nor the machine meets (extras are not installed, so the
    requirements of extras are not asked)."""
    wheels = sorted(folder.glob("*.whl"))
    names = {parse_wheel_filename(wheel.name)[0] for wheel in wheels}
    problems = []
    for python in pythons:
        fitting = [wheel for wheel in wheels if fits(wheel, python)]
        there = dict(parse_wheel_filename(wheel.name)[:2] for wheel in fitting)
        # bench/device-env.sh installs every package named in the folder
        problems += [
            f"Python {python}: no wheel of {name} fits" for name in sorted(names - set(there))
        ]
        problems += [f"Python {python}: {line}" for wheel in fitting
                     for line in unmet(wheel, there, marker_environment(python), provided)]  # fmt: skip
    return problems


def unmet(wheel: Path, there: dict, environment: dict, provided) -> list[str]:
    """The requirements of `wheel` in `environment` that neither the wheels `there` (name:
    version) nor the machine's packages meet."""
    lines = []
    for needed in requirements(wheel):
        name = canonicalize_name(needed.name)
        if (needed.marker and not needed.marker.evaluate(environment)) or name in provided:
            continue
        if name not in there:
            lines.append(f"{wheel.name} needs {needed}: no wheel")
        elif not needed.specifier.contains(there[name], prereleases=True):
            lines.append(f"{wheel.name} needs {needed}: the wheel is {name} {there[name]}")
    return lines


def main(folder: str) -> None:
    problems = missing(Path(folder))
    for line in problems:
        print(f"bench device_wheels: {line}", file=sys.stderr)
    if problems:
        raise SystemExit(1)
    print(f"bench device_wheels: {folder} meets its requirements on Python {', '.join(PYTHONS)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
