#!/usr/bin/env bash
# The GPU check, run on a lent GPU machine whose python3 has torch with CUDA (BENCHMARKS.md),
# after bench/isbi-gpu.sh on the same warm machine: the two and the machine's start fit one
# session's 15 device minutes (tests/test_gpu_check.py checks the sum). Within SECONDS (default
# 240), what the issues need most first: the CUDA paths' tests, then `python -m bench
# gpu-predict gpu-augment gpu-train gpu-limits gpu-more`, each figure recorded as soon as it is
# measured, so a check cut short keeps what came first; OUT/skipped.txt says what stopped,
# failed or had no time left.
# Usage: bash bench/gpu-check.sh OUT [SECONDS]  (wheels for what the machine lacks in .whl/)
set -uo pipefail
out=${1:?give an output folder}
budget=${2:-240}
tests_s=${GPU_CHECK_TESTS_SECONDS:-60}  # the CPU dry run (tests/test_gpu_check.py) needs more
mkdir -p "$out"
within() {  # within CAP COMMAND...: the command with CAP seconds, or what is left of the budget
    local cap=$1 left=$((budget - SECONDS))
    shift
    ((left < cap)) && cap=$left
    if ((cap < 10)); then
        echo "no time left for: $*" | tee -a "$out/skipped.txt"
        return 0
    fi
    timeout --kill-after=5 "$cap" "$@"  # KILL where TERM is caught (a training's handler)
    local code=$?
    if ((code == 124)); then
        echo "stopped at its ${cap} s: $*" | tee -a "$out/skipped.txt"
    elif ((code != 0)); then
        echo "failed (exit $code): $*" | tee -a "$out/skipped.txt"
    fi
}
source bench/device-env.sh
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    grep -m1 "model name" /proc/cpuinfo
    echo "cores $(nproc); bf16 flags: $(grep -o -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    python3 -c "import torch, zarr, dask; print('torch', torch.__version__, 'zarr', zarr.__version__, 'dask', dask.__version__)"
} 2>&1 | tee "$out/machine.txt"
# The CUDA paths no CPU test can reach: augmentation on the device against the CPU's (labels
# exactly), training there (fp16 scaling, resume with the GPU's generator), prediction there.
# -v: each test's line as it ends, so a run stopped at its cap still says which passed.
UNETSEG_TEST_DEVICE=${UNETSEG_TEST_DEVICE:-cuda} within "$tests_s" python3 -m pytest -v --durations=5 -p no:cacheprovider \
    tests/test_augment_device.py::test_the_device_path_makes_the_cpu_paths_sample \
    tests/test_predict.py::test_predict_on_the_test_device_agrees_with_cpu_fp32 \
    tests/test_cli.py::test_a_gpu_running_out_of_memory_is_one_line \
    tests/test_train.py -k "device_path or test_device or out_of_memory or augmented_where_auto or sigterm or mixed_precision or loss_scale" \
    2>&1 | tee "$out/pytest.log"
before=$(wc -l <bench/results.jsonl)
within "$budget" python3 -m bench gpu-predict gpu-augment gpu-train gpu-limits gpu-more 2>&1 |
    tee "$out/bench.log"
tail -n "+$((before + 1))" bench/results.jsonl >"$out/results.jsonl"  # this run's figures
