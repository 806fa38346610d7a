"""`python -m bench NAME...`: run the named benchmark families (all if none is named).

The modules are imported in turn until every named family is found, so a lent GPU machine, which
lacks snakemake and matplotlib, runs the GPU families without importing the modules that need
them (bench/gpu-check.sh)."""

import importlib
import sys

MODULES = ["gpu", "gpu_limits", "pipeline", "predict", "workflow", "metrics", "faults", "train",
           "recipe", "postprocess", "ensemble", "tta", "splits", "chunk", "segment", "sparse",
           "normalize", "summary", "writers", "selection", "choice_rules"]  # fmt: skip


def families(names: list[str]) -> dict:
    """The families of MODULES, imported until all of `names` are found (all if none)."""
    found, unimportable = {}, {}
    for module in MODULES:
        if names and all(name in found for name in names):
            break
        try:
            found |= importlib.import_module(f"bench.{module}").BENCHMARKS
        except ModuleNotFoundError as error:
            unimportable[module] = error
    unknown = [name for name in names if name not in found]
    if unknown or (unimportable and not names):
        cannot = "; ".join(f"bench.{module}: {error}" for module, error in unimportable.items())
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {sorted(found)}"
                         + (f" (not importable here: {cannot})" if cannot else ""))  # fmt: skip
    return found


def main(names: list[str]) -> None:
    found = families(names)
    for name in names or found:
        found[name]()


main(sys.argv[1:])
