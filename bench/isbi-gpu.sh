#!/usr/bin/env bash
# The ISBI 2012 GPU harness (BENCHMARKS.md, isbi-gpu), one command of at most 7.5 minutes on a
# GPU machine whose python3 has torch with CUDA (bench/gpu-check.sh follows it on the same warm
# machine): K arms of config/isbi2012-gpu.yaml trained at once on the one GPU, the held-out
# slices 16-19 predicted with and without TTA, one table.
# Usage: bash bench/isbi-gpu.sh OUT [--tiny] [--arms overlay,no_ema]
#   wheels for what the machine lacks in .whl/ (zarr, numcodecs, dask, ...), the ISBI files in
#   data/isbi2012/ (carried there) or ISBI_DATA; --tiny: a tiny CPU network, to test it first.
set -uo pipefail
out=${1:?give an output folder}
shift
mkdir -p "$out"
source bench/device-env.sh
if [[ " $* " != *" --tiny "* ]] && ! python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    echo "bench isbi-gpu: torch sees no CUDA device here (--tiny runs it on the CPU)" | tee "$out/harness.log"
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >"$out/machine.txt" 2>&1
echo "cores $(nproc)" >>"$out/machine.txt"
timeout --kill-after=5 450 python3 -m bench.isbi_gpu "$out" "$@" 2>&1 | tee "$out/harness.log"
