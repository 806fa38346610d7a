#!/usr/bin/env bash
# Wheels for a lent GPU machine (Python 3.12, x86-64, no package registry; torch, numba, scipy,
# scikit-image and tifffile installed there) into .whl/, for bench/gpu-check.sh and
# bench/isbi-gpu.sh: run here, then carry .whl (keep it out of git: .git/info/exclude).
set -euo pipefail
python3 -m pip download --quiet --dest .whl --only-binary=:all: --no-deps \
    --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --implementation cp \
    zarr==3.1.6 numcodecs==0.16.6 dask==2026.8.0 google-crc32c donfig pyyaml cloudpickle \
    fsspec partd toolz locket click packaging typing_extensions
ls .whl
