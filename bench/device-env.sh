# Sourced by bench/gpu-check.sh and bench/isbi-gpu.sh on a lent GPU machine: what it lacks
# (zarr, numcodecs, dask and their small dependencies) from the wheels in .whl/
# (bench/device-wheels.sh), each package's that fits its Python, into /tmp/site; then this
# checkout's code. --no-deps: torch, numpy and the rest are the machine's own.
if ! python3 -c "import zarr, numcodecs, dask, yaml" 2>/dev/null && [ -d .whl ]; then
    python3 -m pip install -q --no-index --find-links .whl --no-deps --no-compile --no-cache-dir \
        --target /tmp/site zarr numcodecs dask pyyaml google-crc32c donfig cloudpickle fsspec \
        partd toolz locket click packaging typing_extensions importlib_metadata zipp || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/workflow:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
