"""Which validated network training keeps, and what that choice is worth on slices it did not see.

Training keeps the network with the best validation, so the kept network's validation errors
are the best of many tries on the very slices that score it: they flatter it (on ISBI's slices
16-19 by 0.009 and 0.025 in Rand error, BENCHMARKS.md "How much the choice on the scored slices
flatters"). Every validation's counts are kept slice by slice, so that at the end each slice can
be scored by the network the other slices chose (leave one slice out): an estimate of the kept
network's errors on slices that chose nothing, at no extra prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetseg import evaluate

KEEP_BY = ("rand_error", "ap50")


@dataclass
class SliceCounts:
    """One validation slice's counts at each of evaluate.PIXEL_RAND_THRESHOLDS: (TP, FP, FN) of
    the interior pixels, of the pixel pairs (Rand, N² form) and, to keep by AP50, of the cells."""

    pixel: np.ndarray
    rand: np.ndarray
    ap50: np.ndarray | None = None

    def __sub__(self, other: SliceCounts) -> SliceCounts:
        """These counts without `other`'s (pooled slices less one)."""
        cells = None if self.ap50 is None else self.ap50 - other.ap50
        return SliceCounts(self.pixel - other.pixel, self.rand - other.rand, cells)


def pooled(counts: list[SliceCounts]) -> SliceCounts:
    """The counts of slices taken together (cells only where every slice counted them)."""
    cells = [c.ap50 for c in counts]
    return SliceCounts(sum(c.pixel for c in counts), sum(c.rand for c in counts),
                       None if any(c is None for c in cells) else sum(cells))  # fmt: skip


def errors(counts: list[SliceCounts]) -> dict:
    """The pixel and Rand errors (ISBI definitions, at the best threshold) of slices pooled, and
    their AP50 where the counts have it."""
    total = pooled(counts)
    figures = {
        "pixel_error": float(1 - evaluate.best_f(total.pixel)[0]),
        "rand_error": float(1 - evaluate.best_f(total.rand)[0]),
    }
    if total.ap50 is not None:  # at the best threshold, as the errors
        figures["ap50"] = max(evaluate.average_precision(total.ap50))
    return figures


def selection_error(metrics: dict, keep_by: str) -> float:
    """The validation figure that chooses the kept model, as an error (lower is better)."""
    return 1 - metrics["ap50"] if keep_by == "ap50" else metrics[keep_by]


class Validations:
    """Every validation of a run, slice by slice, and whether its network could be kept (a
    network the rollback guard suspects cannot)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.counts: list[list[SliceCounts]] = []
        self.keepable: list[bool] = []

    def add(self, step: int, counts: list[SliceCounts], keepable: bool) -> None:
        self.steps.append(step)
        self.counts.append(counts)
        self.keepable.append(keepable)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "counts": self.counts, "keepable": self.keepable}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.counts, self.keepable = state["steps"], state["counts"], state["keepable"]

    def chosen(self, slices: list[int], keep_by: str) -> int | None:
        """The index of the validation training keeps when only `slices` validate."""
        if not slices:
            return None
        return self.best(lambda i: pooled([self.counts[i][s] for s in slices]), keep_by)

    def best(self, counts_of, keep_by: str) -> int | None:
        """The keepable validation i whose counts_of(i) have the lowest selection error, the
        later on a tie (as training keeps)."""
        return self.lowest(lambda i: selection_error(errors([counts_of(i)]), keep_by))

    def lowest(self, score_of) -> int | None:
        """The keepable validation i with the lowest score_of(i), the later on a tie."""
        candidates = [i for i, keepable in enumerate(self.keepable) if keepable]
        return min(candidates, key=lambda i: (score_of(i), -i)) if candidates else None

    def summary(self, keep_by: str, slice_names: list[str]) -> dict:
        """The kept validation's errors on the slices that chose it, beside each slice scored by
        the validation its other slices chose (none with fewer than two slices)."""
        every = list(range(len(slice_names)))
        result = {"keep_by": keep_by, "slices": slice_names, "validations": len(self.steps)}
        if not every:
            return {**result, "kept": None, "leave_one_slice_out": None}
        totals = [pooled(counts) for counts in self.counts]  # less one slice: a subtraction
        kept = self.best(lambda i: totals[i], keep_by)
        if kept is None:
            return {**result, "kept": None, "leave_one_slice_out": None}
        result["kept"] = {"step": self.steps[kept], **errors([totals[kept]])}
        if len(every) < 2:
            return {**result, "leave_one_slice_out": None}
        left_out = [self.best(lambda i, s=s: totals[i] - self.counts[i][s], keep_by) for s in every]
        estimate = errors([self.counts[i][s] for s, i in zip(every, left_out, strict=True)])
        result["leave_one_slice_out"] = {"steps": [self.steps[i] for i in left_out], **estimate}
        result["flattery"] = {key: round(estimate[key] - result["kept"][key], 6)
                              for key in ("pixel_error", "rand_error")}  # fmt: skip
        return result


def slice_name(labels_path: str, z: int) -> str:
    """'<volume> z<z>', the volume named by its labels store (the workflow's are
    results/<volume>/labels.zarr)."""
    store = Path(labels_path)
    return f"{store.parent.name if store.name == 'labels.zarr' else store.name} z{z}"
