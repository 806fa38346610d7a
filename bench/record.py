"""One JSON line per figure in bench/results.jsonl, with what made it and where."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results.jsonl"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def commit(checkout: Path = REPO) -> str:
    """The short commit of a checkout (this one, by default)."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=checkout
    )
    return done.stdout.strip() or "unknown"


def record(name: str, value: float, unit: str, goal: str, **extra) -> dict:
    """Print one figure and append it to bench/results.jsonl."""
    entry = {
        "name": name,
        "value": value,
        "unit": unit,
        "goal": goal,
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "commit": commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **extra,
    }
    print(json.dumps(entry), flush=True)
    with RESULTS.open("a") as results:
        results.write(json.dumps(entry) + "\n")
    return entry


def peak_rss_mb(command: list[str], env: dict | None = None) -> float:
    """Peak RSS of a command (run with `env`, else this process's environment), from a fresh
    parent (ru_maxrss of children only ever grows)."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *command], capture_output=True, text=True, env=env
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return int(done.stdout.split()[-1]) / 1024


def checkouts() -> dict[str, Path]:
    """The code a memory benchmark runs: ours, and with UNETSEG_BASELINE naming another checkout
    (a `git worktree`), its code too."""
    code = {"ours": REPO / "workflow"}
    if os.environ.get("UNETSEG_BASELINE"):
        code["baseline"] = Path(os.environ["UNETSEG_BASELINE"]) / "workflow"
    return code


def peak_rss_and_seconds(command: list[str], code: Path) -> tuple[float, float]:
    """Peak RSS (MB, peak_rss_mb) and wall time of a command run with the package at `code`."""
    started = time.perf_counter()
    peak = peak_rss_mb(command, env={**os.environ, "PYTHONPATH": str(code)})
    return peak, time.perf_counter() - started


def seconds(function) -> float:
    """Wall time of one call."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def alternating_medians(contenders: dict[str, Callable[[int], float]], rounds: int) -> dict:
    """Median seconds of each contender (called with the round's number) over `rounds` rounds,
    the order reversed every other round, so that a noisy spell or a warm cache favours none."""
    times = {name: [] for name in contenders}
    for round_ in range(rounds):
        for name in list(contenders)[:: 1 if round_ % 2 == 0 else -1]:
            times[name].append(contenders[name](round_))
    return {name: statistics.median(taken) for name, taken in times.items()}
