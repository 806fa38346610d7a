"""Progress of a long step in its log, every EVERY_S seconds: items done of all, throughput and
the time left. A thread polls a count, so it works whatever runs the work (threads, processes,
a Dask cluster whose tasks leave marker files)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

EVERY_S = 30.0


class ProgressLog:
    """`with ProgressLog("predict", "chunks", total, px_per_item, count):` logs
    "predict: 12 of 40 chunks (30 %), 3.1 Mpx/s, about 1 min left" while the block runs."""

    def __init__(
        self, step: str, unit: str, total: int, px_per_item: float, count: Callable[[], int]
    ):
        self.step, self.unit, self.total = step, unit, total
        self.px_per_item, self.count = px_per_item, count
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"{step}-progress", daemon=True)
        self.started = time.perf_counter()

    def __enter__(self) -> ProgressLog:
        self.started = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def run(self) -> None:
        while not self.stopped.wait(EVERY_S):
            log.info(self.line(self.count(), time.perf_counter() - self.started))

    def line(self, done: int, seconds: float) -> str:
        share = done / self.total if self.total else 1.0
        rate = done * self.px_per_item / max(seconds, 1e-9) / 1e6
        left = f", about {duration(seconds * (1 - share) / share)} left" if 0 < share < 1 else ""
        return (
            f"{self.step}: {done} of {self.total} {self.unit} ({100 * share:.0f} %), "
            f"{rate:.2f} Mpx/s{left}"
        )


class Counter:
    """A count that worker threads add to."""

    def __init__(self):
        self.value = 0
        self.lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self.lock:
            self.value += n


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
