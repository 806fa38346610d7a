#!/usr/bin/env bash
# Wheels for a lent GPU machine (x86-64, no package registry; torch, numba, scipy, scikit-image
# and tifffile installed there) into .whl/, for bench/gpu-check.sh and bench/isbi-gpu.sh: run
# here, then carry .whl (keep it out of git: .git/info/exclude). The compiled ones for Python
# 3.11 to 3.13 (the machine had 3.12), so a machine on another of them still installs
# (bench/device-env.sh picks what fits).
set -euo pipefail
python3 -c "import packaging" 2>/dev/null || {
    echo "bench/device-wheels.sh: run it in the project's venv (. .venv/bin/activate): its check of the wheels needs packaging" >&2
    exit 1
}
download() {  # download PYTHON_VERSION PACKAGE...
    local version=$1
    shift
    python3 -m pip download --quiet --dest .whl --only-binary=:all: --no-deps \
        --python-version "$version" --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --implementation cp "$@"
}
download 3.12 zarr==3.1.6 dask==2026.8.0 donfig cloudpickle fsspec partd toolz locket click \
    packaging typing_extensions importlib_metadata zipp lazy_importer
for version in 3.11 3.12 3.13; do
    download "$version" numcodecs==0.16.6 google-crc32c pyyaml
done
python3 -m bench.device_wheels .whl  # every requirement met, for each Python, or stop here
ls .whl
