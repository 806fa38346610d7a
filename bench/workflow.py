"""Whole-workflow figures: the demo's wall time, per-stage times, and the no-op rerun."""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.record import REPO, record


def snakemake(workdir: Path, *arguments: str, config: Path = REPO / "config/config.yaml") -> float:
    """Run the real snakemake on `config` (the demo's) in `workdir`; return its wall time."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(config),
        "--cores", "all", *arguments,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{done.stderr[-3000:]}")
    return seconds


def stage_seconds(results: Path) -> dict[str, float]:
    """Seconds per rule, summed over its jobs, from the rules' `benchmark:` files."""
    totals: dict[str, float] = {}
    for tsv in sorted((results / "benchmarks").glob("*/*.tsv")):
        with tsv.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        totals[tsv.parent.name] = totals.get(tsv.parent.name, 0.0) + float(row["s"])
    return totals


def demo() -> None:
    """demo_wall_s, stage_seconds_<rule> and noop_rerun_s on the demo config, in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="unetseg-demo-") as folder:
        workdir = Path(folder)
        wall = snakemake(workdir)
        record("demo_wall_s", round(wall, 1), "s", "< 300")
        for rule, seconds in stage_seconds(workdir / "results").items():
            record(f"stage_seconds_{rule}", round(seconds, 2), "s", "report only")
        reruns = [snakemake(workdir) for _ in range(5)]
        record(
            "noop_rerun_s",
            round(statistics.median(reruns), 2),
            "s",
            "< 3",
            runs=[round(s, 2) for s in reruns],
        )


BENCHMARKS = {"demo": demo}
