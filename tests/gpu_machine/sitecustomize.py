"""Python as a lent GPU machine has it (PYTHONPATH=tests/gpu_machine): torch, numba, scipy,
scikit-image, tifffile and pytest are installed there, zarr, numcodecs, dask and their small
dependencies travel as wheels (bench/device-wheels.sh); the rest of this project's dependencies
are not there, so importing them fails here as it would there."""

import importlib.abc
import sys

NOT_ON_A_GPU_MACHINE = {"snakemake", "distributed", "matplotlib", "dask_jobqueue", "monai",
                        "zarrs", "tensorstore", "bioimageio", "ome_zarr", "playwright"}  # fmt: skip


class NotOnAGpuMachine(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in NOT_ON_A_GPU_MACHINE:
            raise ModuleNotFoundError(f"No module named {name!r} (not on a GPU machine)", name=name)
        return None


sys.meta_path.insert(0, NotOnAGpuMachine())
