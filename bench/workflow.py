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


SCALE_VOLUMES = (1, 10, 100, 500)


def scale_config(folder: Path, n_volumes: int) -> Path:
    """N predict volumes (each its own name, all reading one small TIFF) and the shipped model."""
    import numpy as np
    import tifffile
    import yaml

    raw = folder / "raw.tif"
    if not raw.exists():
        tifffile.imwrite(raw, np.zeros((1, 64, 64), np.uint8))
    config = {
        "results": "results",
        "volumes": [
            {"name": f"v{i:04d}", "raw": str(raw), "role": "predict"} for i in range(n_volumes)
        ],  # fmt: skip
        "model": {
            "pretrained": str(REPO / "models/isbi2012-cpu-16ch/model.pt"),
            "depth": 4,
            "base_channels": 16,
        },  # fmt: skip
        "segment": {"threshold": 0.5},
    }
    path = folder / f"config-{n_volumes}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def copy_volume_outputs(results: Path, first: str, name: str) -> None:
    """The outputs of volume `first` as those of volume `name` (`cp -a`: the same contents and
    modification times, so Snakemake finds them up to date as it found the first's)."""
    for source in [results / first, results / "report" / first,
                   *results.glob(f"logs/*/{first}.log"), *results.glob(f"benchmarks/*/{first}.tsv")]:  # fmt: skip
        target = source.with_name(source.name.replace(first, name))
        subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def workflow_scale(sizes=SCALE_VOLUMES, rounds: int = 3) -> None:
    """noop_rerun_s_<N>_volumes, dag_s_<N>_volumes, report_s_<N>_volumes: how Snakemake's own
    work grows with the number of volumes (what is timed is the DAG, the up-to-date checks and
    the report, not the stages). One real run makes the first volume's outputs; the others get
    copies of them (`cp -a`), so the tree is up to date without running 6 jobs per volume."""
    for n_volumes in sizes:
        with tempfile.TemporaryDirectory(prefix=f"unetseg-scale-{n_volumes}-") as folder:
            workdir = Path(folder)
            config = scale_config(workdir, n_volumes)
            dag = [snakemake(workdir, "-n", config=config) for _ in range(rounds)]
            if n_volumes == 1:
                snakemake(workdir, config=config)
            else:
                real_first_volume(workdir, n_volumes)
            noop = [snakemake(workdir, config=config) for _ in range(rounds)]
            report = snakemake(workdir, "--report", str(workdir / "report.zip"), config=config)
            common = {"volumes": n_volumes, "jobs_per_volume": 6, "rounds": rounds,
                      "note": "the first volume's outputs copied for the others; medians"}  # fmt: skip
            record(f"dag_s_{n_volumes}_volumes", round(statistics.median(dag), 2), "s",
                   "linear in volumes", **common, runs=[round(s, 2) for s in dag])  # fmt: skip
            record(f"noop_rerun_s_{n_volumes}_volumes", round(statistics.median(noop), 2), "s",
                   "<= 10 at 500 volumes, linear", **common, runs=[round(s, 2) for s in noop])  # fmt: skip
            record(f"report_s_{n_volumes}_volumes", round(report, 2), "s", "linear in volumes",
                   **common)  # fmt: skip


def real_first_volume(workdir: Path, n_volumes: int) -> None:
    """Run the workflow for the first volume alone, then copy its outputs to the others and
    make the run summary over all of them."""
    one = scale_config(workdir, 1)
    snakemake(workdir, config=one)
    for i in range(1, n_volumes):
        copy_volume_outputs(workdir / "results", "v0000", f"v{i:04d}")
    snakemake(workdir, "--forcerun", "report_run", config=workdir / f"config-{n_volumes}.yaml")


BENCHMARKS["workflow-scale"] = workflow_scale
