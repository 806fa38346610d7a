#!/usr/bin/env bash
# What a lent GPU machine needs from here, in ignored paths that the device tool's `carry` takes
# there: the wheels of what it lacks (bench/device-wheels.sh) and the ISBI 2012 training files
# for bench/isbi-gpu.sh (from ISBI_DATA, default ../shared/data/isbi2012). Then run, with
# carry [".whl", "data/isbi2012"]: `bash bench/isbi-gpu.sh $OUT` (timeout_s 470), then on the
# warm machine `bash bench/gpu-check.sh $OUT` (timeout_s 260).
set -euo pipefail
bash bench/device-wheels.sh
source=${ISBI_DATA:-../shared/data/isbi2012}
mkdir -p data/isbi2012
for name in train-volume.tif train-labels.tif; do
    [ -e "data/isbi2012/$name" ] || cp "$source/$name" data/isbi2012/
done
du -sh .whl data/isbi2012  # carry takes 64 MiB at most
echo 'carry: [".whl", "data/isbi2012"]'
