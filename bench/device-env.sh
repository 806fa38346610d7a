# Sourced by bench/gpu-check.sh and bench/isbi-gpu.sh on a lent GPU machine: what it lacks
# (zarr, numcodecs, dask and their small dependencies) from the wheels in .whl/
# (bench/device-wheels.sh), each package's that fits its Python, into /tmp/site (once: the
# second script finds them there); then this checkout's code. --no-deps: torch, numpy and the
# rest are the machine's own.
imports="import zarr, numcodecs, dask.array, yaml"
if ! python3 -c "$imports" 2>/dev/null && [ -d .whl ]; then
    export PYTHONPATH=/tmp/site
    if ! python3 -c "$imports" 2>/dev/null; then
        # every package that has a wheel there (bench/device_wheels.py checked the set is whole)
        python3 -m pip install -q --no-index --find-links .whl --no-deps --no-compile \
            --no-cache-dir --target /tmp/site $(ls .whl | cut -d- -f1 | sort -u) || exit 1
        python3 -c "$imports" || {
            echo "bench/device-env.sh: the wheels in .whl do not import on $(python3 -V)" >&2
            exit 1
        }
    fi
fi
export PYTHONPATH="$PWD/workflow:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
