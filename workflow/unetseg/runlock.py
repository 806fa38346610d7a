"""One run per working directory: a lock file naming the running Snakemake process (host, PID,
its start) that a second run reads and stops on, and that a run whose process is gone (killed,
the node rebooted) leaves for the next run to take over.

Snakemake's own lock has no owner: a killed run leaves it behind and the rerun must be told
`--unlock`, so the profiles turn it off (`nolock`) and the workflow takes this one in its
`onstart` hook instead (the main process of a run that executes jobs: not dry runs, reports or
the jobs themselves)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from unetseg.errors import UnetsegError

log = logging.getLogger(__name__)

LOCK = Path(".snakemake") / "unetseg-run.lock"


def process_start(pid: int) -> str | None:
    """The kernel's start time of process `pid` (clock ticks since boot, /proc/PID/stat field
    22), which tells a live process from a later one that reuses its PID; None where gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "process_start": process_start(pid),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip


def is_alive(holder: dict) -> bool:
    """Whether the holder's process still runs (on this host; another host's cannot be known
    and counts as running)."""
    if holder.get("host") != socket.gethostname():
        return True
    start = process_start(int(holder.get("pid", -1)))
    return start is not None and start == holder.get("process_start", start)


def describe(holder: dict, path: Path) -> str:
    return f"PID {holder.get('pid')} on host {holder.get('host')}, since {holder.get('since')} ({path})"


def acquire(path: str | os.PathLike = LOCK) -> str | None:
    """Take the lock, or raise UnetsegError naming the run that holds it. Returns a note when a
    stale lock was taken over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    note = None
    for _ in range(2):  # a stale lock is replaced once; losing that race means another run won
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_holder(path)
            if holder is None:  # being written by a run that has just created it, or cut short
                time.sleep(0.2)
                holder = read_holder(path)
            if holder is not None and is_alive(holder):
                raise UnetsegError(
                    f"another run is working in this folder: {describe(holder, path)}; wait for "
                    "it to end or stop it (if it runs on another host and is gone, delete the "
                    "lock file)"
                ) from None
            note = f"took over a stale lock: {describe(holder or {}, path)}, whose process is gone"
            with_no_file(path)
            continue
        with os.fdopen(descriptor, "w") as file:
            json.dump(owner(), file)
        return note
    raise UnetsegError(f"{path}: another run took the lock at the same moment; try again")


def release(path: str | os.PathLike = LOCK) -> None:
    """Remove the lock if this process holds it."""
    path = Path(path)
    holder = read_holder(path)
    if (
        holder is not None
        and holder.get("pid") == os.getpid()
        and holder.get("host") == socket.gethostname()
    ):
        with_no_file(path)


def read_holder(path: Path) -> dict | None:
    """The lock's content; None for a file cut short (its writer died while writing)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def with_no_file(path: Path) -> None:
    path.unlink(missing_ok=True)
