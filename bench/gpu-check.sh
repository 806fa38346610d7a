#!/usr/bin/env bash
# The GPU check, run on a lent GPU machine whose python3 has torch with CUDA (BENCHMARKS.md):
# the train and device tests through the CUDA paths, then `python -m bench gpu` and
# `python -m bench gpu-limits` (large batches, CUDA graphs, torch.compile). Within 9 minutes:
# each step has its timeout, and each figure is recorded as soon as it is measured.
# Usage: bash bench/gpu-check.sh OUT_FOLDER  (wheels for what the machine lacks in .whl/, if any)
set -uo pipefail
out=${1:?give an output folder}
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/workflow:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    grep -m1 "model name" /proc/cpuinfo
    echo "cores $(nproc); bf16 flags: $(grep -o -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    python3 -c "import torch, zarr, dask, numba; print('torch', torch.__version__, 'zarr', zarr.__version__, 'dask', dask.__version__)"
} 2>&1 | tee "$out/machine.txt"
UNETSEG_TEST_DEVICE=cuda timeout 150 python3 -m pytest -q -p no:cacheprovider \
    tests/test_model.py tests/test_train.py \
    tests/test_predict.py::test_predict_on_the_test_device_agrees_with_cpu_fp32 \
    tests/test_predict.py::test_a_compiled_model_predicts_as_the_eager_one 2>&1 |
    tee "$out/pytest.log"
before=$(wc -l <bench/results.jsonl)
timeout 300 python3 -m bench gpu 2>&1 | tee "$out/bench.log"
timeout 90 python3 -m bench gpu-limits 2>&1 | tee "$out/limits.log"
tail -n "+$((before + 1))" bench/results.jsonl >"$out/results.jsonl"  # this run's figures
