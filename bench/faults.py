"""Fault injection: SIGKILL the whole Snakemake process tree at seeded moments in each stage,
rerun with the documented command, and compare every final output with an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.record import REPO, record

STAGES = ["chunk", "weights", "train", "predict", "segment", "evaluate", "report"]
RULE_LINE = re.compile(r"^(?:local)?rule (\w+):", re.MULTILINE)
FINISHED_LINE = re.compile(r"Finished jobid: \d+ \(Rule: (\w+)\)")


def command(workdir: Path, config: Path) -> list[str]:
    """The documented run command (the profile carries rerun-incomplete and nolock)."""
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(config), "--cores", "2",
    ]  # fmt: skip


def environment() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def run_to_completion(workdir: Path, config: Path) -> None:
    done = subprocess.run(
        command(workdir, config), capture_output=True, text=True, env=environment()
    )
    if done.returncode != 0:
        raise RuntimeError(f"snakemake failed in {workdir}:\n{done.stderr[-3000:]}")


def digest_outputs(results: Path) -> dict[str, str]:
    """Content digests of every final output that a run must reproduce exactly."""
    import tifffile
    import torch

    from unetseg import io

    digests = {}
    for store in sorted(results.glob("*/*.zarr")):
        array = io.open_zarr(store)[...]
        digests[str(store.relative_to(results))] = f"{array.dtype}{array.shape}" + sha(
            array.tobytes()
        )
    for tiff in sorted(results.glob("*/*.tif")):
        digests[str(tiff.relative_to(results))] = sha(tifffile.imread(tiff).tobytes())
    model = torch.load(results / "model/model.pt", weights_only=True)
    digests["model/model.pt"] = sha(
        b"".join(t.numpy().tobytes() for t in model["model_state"].values())
    )
    for text in [
        *results.glob("*/*metrics*.json"),
        *results.glob("*/metrics*.tsv"),
        *results.glob("*.tsv"),
    ]:
        digests[str(text.relative_to(results))] = sha(text.read_bytes())
    log = np.loadtxt(results / "model/train_log.tsv", skiprows=1, usecols=(0, 1, 2, 3), ndmin=2)
    digests["model/train_log.tsv (without seconds)"] = sha(log.tobytes())
    return digests


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def kill_during(workdir: Path, config: Path, stage: str, delay_s: float, timeout_s: float = 600):
    """Start the workflow, wait for a job of `stage` to start, then `delay_s`, then SIGKILL all.

    Returns the rules that were running at the kill (started, not finished).
    """
    process = subprocess.Popen(
        command(workdir, config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=environment(), start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    started = threading.Event()

    def read():
        for line in process.stdout:
            output.append(line)
            match = RULE_LINE.match(line)
            if match and match[1].startswith(stage):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started.wait(timeout_s)
    time.sleep(delay_s)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    reader.join(5)
    text = "".join(output)
    running = set(RULE_LINE.findall(text))
    finished = FINISHED_LINE.findall(text)
    for rule in finished:
        running.discard(rule)
    return sorted(running)


def leftovers(results: Path) -> list[str]:
    """Temporary and scratch files of killed steps still there after the rerun (each step's
    rerun removes its own: io.remove_leftovers)."""
    found = (path for pattern in (".*.tmp-*", ".*.scratch-*") for path in results.rglob(pattern))
    return sorted(str(path.relative_to(results)) for path in found)


def stage_of(rule: str) -> str:
    return next((stage for stage in STAGES if rule.startswith(stage)), rule)


def fault_trials(
    config: Path,
    root: Path,
    trials: int,
    seed: int = 0,
    max_delay_s: float = 20.0,
    stages=STAGES,
    max_short_delay_s: float = 2.0,
):
    """Run `trials` kill-and-rerun trials, cycling over `stages`; return (records, reference).
    The kill comes up to `max_delay_s` into training, up to `max_short_delay_s` into the other
    (shorter) stages."""
    reference_dir = root / "reference"
    run_to_completion(reference_dir, config)
    reference = digest_outputs(reference_dir / "results")
    rng = random.Random(seed)
    records = []
    for trial in range(trials):
        stage = stages[trial % len(stages)]
        delay = rng.uniform(0, max_delay_s if stage == "train" else max_short_delay_s)
        workdir = root / f"trial{trial:02d}"
        killed_in = kill_during(workdir, config, stage, delay)
        run_to_completion(workdir, config)
        digests = digest_outputs(workdir / "results")
        mismatches = sorted(
            k for k in reference.keys() | digests.keys() if reference.get(k) != digests.get(k)
        )
        records.append(
            {"trial": trial, "target": stage, "delay_s": round(delay, 2),
             "killed_in": sorted({stage_of(rule) for rule in killed_in}), "mismatches": mismatches,
             "leftovers": leftovers(workdir / "results")}
        )  # fmt: skip
        print(records[-1], flush=True)
    return records, reference


def faults() -> None:
    """fault_trials_mismatches on the demo config: 21 trials, 3 per stage."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="unetseg-faults-") as folder:
        records, reference = fault_trials(REPO / "config/config.yaml", Path(folder), trials=21)
    stages_hit = sorted({stage for r in records for stage in r["killed_in"]})
    record(
        "fault_trials_mismatches",
        sum(len(r["mismatches"]) for r in records),
        "outputs differing from an uninterrupted run",
        "0",
        leftovers=sum(len(r["leftovers"]) for r in records),
        trials=len(records),
        stages_hit=stages_hit,
        outputs_compared=len(reference),
        trial_records=records,
    )


BENCHMARKS = {"faults": faults}
