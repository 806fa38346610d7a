"""`python -m bench NAME...`: run the named benchmark families (all if none is named)."""

import sys

from bench import (
    chunk,
    ensemble,
    faults,
    gpu,
    gpu_limits,
    metrics,
    normalize,
    pipeline,
    postprocess,
    predict,
    recipe,
    segment,
    sparse,
    splits,
    summary,
    train,
    tta,
    workflow,
    writers,
)

FAMILIES = {
    **workflow.BENCHMARKS,
    **metrics.BENCHMARKS,
    **faults.BENCHMARKS,
    **train.BENCHMARKS,
    **predict.BENCHMARKS,
    **recipe.BENCHMARKS,
    **pipeline.BENCHMARKS,
    **postprocess.BENCHMARKS,
    **ensemble.BENCHMARKS,
    **tta.BENCHMARKS,
    **splits.BENCHMARKS,
    **chunk.BENCHMARKS,
    **segment.BENCHMARKS,
    **sparse.BENCHMARKS,
    **normalize.BENCHMARKS,
    **gpu.BENCHMARKS,
    **gpu_limits.BENCHMARKS,
    **summary.BENCHMARKS,
    **writers.BENCHMARKS,
}


def main(names: list[str]) -> None:
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {sorted(FAMILIES)}")
    for name in names or FAMILIES:
        FAMILIES[name]()


main(sys.argv[1:])
