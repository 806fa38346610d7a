"""bench/device_wheels.py: the wheels carried to a GPU machine checked for a whole set, per
Python, before the machine's minutes are spent (importlib_metadata 10 needed lazy_importer,
which no wheel brought, and dask imports importlib_metadata on Python 3.11 only)."""

import zipfile

from bench.device_wheels import missing


def wheel(folder, filename, *requires):
    name, version = filename.split("-")[:2]
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {line}\n" for line in requires
    )
    with zipfile.ZipFile(folder / filename, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata)


def test_a_requirement_of_one_python_without_a_wheel_is_named_for_that_python(tmp_path):
    wheel(tmp_path, "dask-1.0-py3-none-any.whl", 'importlib_metadata>=4; python_version < "3.12"',
          "numpy>=1.24", "pyyaml[libyaml]>=5 ; extra == 'complete'")  # fmt: skip
    wheel(tmp_path, "importlib_metadata-10.2-py3-none-any.whl", "lazy-importer>=0.1")
    assert missing(tmp_path) == [
        "Python 3.11: importlib_metadata-10.2-py3-none-any.whl needs lazy-importer>=0.1: no wheel",
        "Python 3.12: importlib_metadata-10.2-py3-none-any.whl needs lazy-importer>=0.1: no wheel",
        "Python 3.13: importlib_metadata-10.2-py3-none-any.whl needs lazy-importer>=0.1: no wheel",
    ]  # numpy is the machine's; an extra's requirements are not installed
    wheel(tmp_path, "lazy_importer-0.1.0-py3-none-any.whl")
    assert missing(tmp_path) == []
    (tmp_path / "importlib_metadata-10.2-py3-none-any.whl").unlink()
    assert missing(tmp_path) == [
        "Python 3.11: dask-1.0-py3-none-any.whl needs importlib_metadata>=4; "
        'python_version < "3.12": no wheel'
    ]


def test_a_compiled_package_needs_a_wheel_for_each_python_and_versions_must_match(tmp_path):
    wheel(tmp_path, "zarr-3.1-py3-none-any.whl", "numcodecs>=0.14")
    for python in ("311", "312"):
        wheel(tmp_path, f"numcodecs-0.16-cp{python}-cp{python}-manylinux_2_28_x86_64.whl")
    assert missing(tmp_path) == [
        "Python 3.13: no wheel of numcodecs fits",
        "Python 3.13: zarr-3.1-py3-none-any.whl needs numcodecs>=0.14: no wheel",
    ]
    wheel(tmp_path, "numcodecs-0.13-cp313-cp313-manylinux_2_28_x86_64.whl")
    assert missing(tmp_path) == [
        "Python 3.13: zarr-3.1-py3-none-any.whl needs numcodecs>=0.14: the wheel is numcodecs 0.13"
    ]
