"""ISBI 2012 metrics as Fiji's trainableSegmentation scored the challenge (shared METRICS.md).

Pixel error and foreground-restricted Rand error: 1 - max F over 11 thresholds; warping error:
min over 10 thresholds of (split + merger pixels) / pixels, after simple-point warping. Counts are
summed over slices before F (micro-average). Prediction = probability of cell interior, compared
as float32 widened to double: interior iff p > t.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from unetseg.errors import UnetsegError
from unetseg.labels import FOUR_CONNECTED

log = logging.getLogger(__name__)

EIGHT_CONNECTED = ndimage.generate_binary_structure(2, 2)
WARPING_RADIUS_PX = 20


def java_thresholds(low: float, high: float, step: float = 0.1) -> list[float]:
    """Thresholds as Java's `for (th = low; th <= high; th += step)` makes them, in double."""
    values, threshold = [], low
    while threshold <= high:
        values.append(threshold)
        threshold += step
    return values


PIXEL_RAND_THRESHOLDS = java_thresholds(0.0, 1.0)
WARPING_THRESHOLDS = java_thresholds(0.0, 0.9)


def f_score(tp: float, fp: float, fn: float) -> float:
    """Fiji's ClassificationStatistics F-score, with its conventions for empty classes."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def best_f(counts: np.ndarray) -> tuple[float, int, list[float]]:
    """(best F scanned from 0 with strict '>', index of its threshold, all F) of (n, 3) counts."""
    scores = [f_score(*row) for row in counts]
    best, best_index = 0.0, 0
    for index, score in enumerate(scores):
        if score > best:
            best, best_index = score, index
    return best, best_index, scores


def binarize(probability: np.ndarray, threshold: float) -> np.ndarray:
    return probability.astype(np.float32).astype(np.float64) > threshold


# --- pixel error -----------------------------------------------------------------------------


def pixel_counts(truth: np.ndarray, probability: np.ndarray, thresholds) -> np.ndarray:
    """(thresholds, 3) TP, FP, FN of the interior class for one slice."""
    interior = truth > 0
    rows = []
    for threshold in thresholds:
        predicted = binarize(probability, threshold)
        tp = np.count_nonzero(predicted & interior)
        rows.append((tp, np.count_nonzero(predicted) - tp, np.count_nonzero(interior) - tp))
    return np.array(rows, dtype=np.int64)


# --- Rand error ------------------------------------------------------------------------------


def rand_counts(truth: np.ndarray, probability: np.ndarray, thresholds, n2: bool) -> np.ndarray:
    """(thresholds, 3) TP, FP, FN of pixel pairs, foreground-restricted, for one slice.

    Float because Fiji's N² counts of a slice without any GT interior are NaN.
    """
    truth_ids, _ = ndimage.label(truth > 0, structure=FOUR_CONNECTED)
    foreground = truth_ids > 0
    n = int(np.count_nonzero(foreground))
    if n2 and n == 0:
        return np.full((len(thresholds), 3), np.nan)
    a = np.bincount(truth_ids[foreground]).astype(np.int64)[1:]
    rows = []
    for threshold in thresholds:
        predicted_ids, n_predicted = ndimage.label(
            binarize(probability, threshold), structure=FOUR_CONNECTED
        )
        ids_here = predicted_ids[foreground]
        in_segment = ids_here > 0
        singletons = n - int(np.count_nonzero(in_segment))
        pair_index = truth_ids[foreground][in_segment] * (n_predicted + 1) + ids_here[in_segment]
        n_ij = np.unique(pair_index, return_counts=True)[1].astype(np.int64)
        b = np.bincount(ids_here[in_segment], minlength=n_predicted + 1).astype(np.int64)
        if n2:
            tp = int((n_ij**2).sum()) + singletons
            fp = int((b**2).sum()) + singletons - tp
            fn = int((a**2).sum()) - tp
        else:
            tp = int((n_ij * (n_ij - 1) // 2).sum())
            fp = int((b * (b - 1) // 2).sum()) - tp
            fn = int((a * (a - 1) // 2).sum()) - tp
        rows.append((tp, fp, fn))
    return np.array(rows, dtype=np.float64)


# --- warping error ---------------------------------------------------------------------------


def _neighbourhood_is_simple(code: int) -> bool:
    """(4, 8) simple point test for a 3x3 neighbourhood coded as 8 bits (bit set = interior)."""
    patch = np.zeros((3, 3), bool)
    positions = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
    for bit, (y, x) in enumerate(positions):
        patch[y, x] = bool(code >> bit & 1)
    interior_ids, _ = ndimage.label(patch, structure=FOUR_CONNECTED)
    touching = {interior_ids[y, x] for y, x in ((0, 1), (1, 0), (1, 2), (2, 1))} - {0}
    background = ~patch
    background[1, 1] = False
    _, n_background = ndimage.label(background, structure=EIGHT_CONNECTED)
    return len(touching) == 1 and n_background == 1


SIMPLE_LOOKUP = np.array([_neighbourhood_is_simple(code) for code in range(256)])
# Bit weights of the 8 neighbours, in the order used by _neighbourhood_is_simple.
NEIGHBOUR_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]


def warp(truth: np.ndarray, target: np.ndarray, probability: np.ndarray, threshold: float):
    """Flip simple mismatching pixels of `truth` towards `target` (METRICS.md §6.2)."""
    height, width = truth.shape
    # One-pixel membrane frame: pixels outside the image count as membrane.
    source = np.zeros((height + 2, width + 2), bool)
    source[1:-1, 1:-1] = truth
    key = np.abs(probability.astype(np.float32).astype(np.float64) - threshold).astype(np.float32)
    while True:
        rows, cols = np.nonzero(source[1:-1, 1:-1] != target)
        if rows.size == 0:
            break
        # Larger key first; ties by column, then row (a stable sort of a column-major scan).
        order = np.lexsort((rows, cols, -key[rows, cols]))
        flipped = 0
        for y, x in zip(rows[order] + 1, cols[order] + 1, strict=True):
            code = 0
            for bit, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
                code |= int(source[y + dy, x + dx]) << bit
            if SIMPLE_LOOKUP[code]:
                source[y, x] = not source[y, x]
                flipped += 1
        if flipped == 0:
            break
    return source[1:-1, 1:-1]


def is_split_cut(warped: np.ndarray, y: int, x: int, radius: int) -> bool:
    """Would turning interior pixel (y, x) into membrane split its object? (METRICS.md §6.3)."""
    height, width = warped.shape
    if radius < 1 or radius > width or radius > height:
        window, cy, cx = warped.copy(), y, x
    else:
        window = np.zeros((2 * radius + 1, 2 * radius + 1), bool)
        y0, x0 = y - radius, x - radius
        sy, sx = max(y0, 0), max(x0, 0)
        ey, ex = min(y + radius + 1, height), min(x + radius + 1, width)
        window[sy - y0 : ey - y0, sx - x0 : ex - x0] = warped[sy:ey, sx:ex]
        cy = cx = radius
    window[cy, cx] = False
    ids, _ = ndimage.label(window, structure=FOUR_CONNECTED)
    around = ids[max(cy - 1, 0) : cy + 2, max(cx - 1, 0) : cx + 2]
    return len(np.unique(around)) > 2


def topology_errors(truth: np.ndarray, probability: np.ndarray, threshold: float):
    """(split pixels, merger pixels) of one slice at one threshold."""
    target = binarize(probability, threshold)
    warped = warp(truth > 0, target, probability, threshold)
    mismatches = np.argwhere(warped != target)
    if len(mismatches) == 0:
        return 0, 0
    ids, _ = ndimage.label(warped, structure=FOUR_CONNECTED)
    padded = np.pad(ids, 1, constant_values=-1)  # -1 marks out-of-image neighbours
    splits = mergers = 0
    for y, x in mismatches:
        around = padded[y : y + 3, x : x + 3].copy()
        around[1, 1] = -1
        neighbour_ids = set(np.unique(around).tolist()) - {-1}
        objects = neighbour_ids - {0}
        interior = warped[y, x]
        if len(objects) >= 2:
            splits += interior
            mergers += not interior
        elif len(objects) == 1 and 0 in neighbour_ids and interior:
            splits += is_split_cut(warped, y, x, WARPING_RADIUS_PX)
    return int(splits), int(mergers)


def warping_counts(truth: np.ndarray, probability: np.ndarray, thresholds) -> np.ndarray:
    """(thresholds, 2) split and merger pixels of one slice."""
    return np.array([topology_errors(truth, probability, t) for t in thresholds], dtype=np.int64)


# --- volumes ---------------------------------------------------------------------------------


@dataclass
class SliceCounts:
    pixel: np.ndarray
    rand_n2: np.ndarray
    rand_pairs: np.ndarray
    warping: np.ndarray


def slice_counts(truth: np.ndarray, probability: np.ndarray) -> SliceCounts:
    return SliceCounts(
        pixel_counts(truth, probability, PIXEL_RAND_THRESHOLDS),
        rand_counts(truth, probability, PIXEL_RAND_THRESHOLDS, n2=True),
        rand_counts(truth, probability, PIXEL_RAND_THRESHOLDS, n2=False),
        warping_counts(truth, probability, WARPING_THRESHOLDS),
    )


def summarize_f(counts: np.ndarray) -> dict:
    best, index, scores = best_f(counts)
    return {
        "error": 1.0 - best,
        "best_threshold": PIXEL_RAND_THRESHOLDS[index],
        "f_scores": scores,
    }


def summarize(per_slice: list[SliceCounts], n_pixels: int) -> dict:
    """Micro-averaged metrics of a stack from its per-slice counts."""
    pixel = summarize_f(sum(c.pixel for c in per_slice))
    rand_n2 = summarize_f(sum(c.rand_n2 for c in per_slice))
    rand_pairs = summarize_f(sum(c.rand_pairs for c in per_slice))
    topology = sum(c.warping for c in per_slice)
    errors = topology.sum(axis=1) / n_pixels
    best = int(np.argmin(errors))
    return {
        "pixel_error": pixel["error"],
        "rand_error": rand_n2["error"],
        "rand_error_pairs": rand_pairs["error"],
        "warping_error": float(errors[best]),
        "pixel": pixel,
        "rand": rand_n2,
        "rand_pairs": rand_pairs,
        "warping": {
            "best_threshold": WARPING_THRESHOLDS[best],
            "splits": topology[:, 0].tolist(),
            "mergers": topology[:, 1].tolist(),
            "errors": errors.tolist(),
        },
    }


def check_inputs(truth: np.ndarray, probability: np.ndarray, truth_name: str, prob_name: str):
    if truth.shape != probability.shape:
        raise UnetsegError(
            f"{prob_name}: shape {probability.shape} does not match truth {truth_name} "
            f"shape {truth.shape}"
        )
    if probability.dtype.kind == "f":
        finite = np.isfinite(probability)
        if not finite.all() or probability.min() < 0 or probability.max() > 1:
            raise UnetsegError(f"{prob_name}: probabilities must be finite and within [0, 1]")
    elif not set(np.unique(probability).tolist()) <= {0, 1, 255}:
        raise UnetsegError(f"{prob_name}: integer predictions must be binary (0/1 or 0/255)")


def as_probability(prediction: np.ndarray) -> np.ndarray:
    """Float32 probabilities; a binary 0/255 or 0/1 map becomes 0.0/1.0 (ImageJ's `> 0`)."""
    if prediction.dtype.kind == "f":
        return prediction.astype(np.float32)
    return (prediction > 0).astype(np.float32)


def evaluate_arrays(truth: np.ndarray, prediction: np.ndarray, workers: int = 1) -> dict:
    """All metrics of a (z, y, x) or (y, x) stack; slices evaluated in parallel with Dask."""
    import dask

    truth = truth[np.newaxis] if truth.ndim == 2 else truth
    prediction = prediction[np.newaxis] if prediction.ndim == 2 else prediction
    check_inputs(truth, prediction, "truth", "prediction")
    probability = as_probability(prediction)
    tasks = [dask.delayed(slice_counts)(t, p) for t, p in zip(truth, probability, strict=True)]
    per_slice = dask.compute(*tasks, scheduler="threads", num_workers=workers)
    metrics = summarize(list(per_slice), truth.size)
    metrics["per_slice"] = [
        {"slice": z, **headline(summarize([counts], truth[z].size))}
        for z, counts in enumerate(per_slice)
    ]
    return metrics


HEADLINE_KEYS = ("pixel_error", "rand_error", "rand_error_pairs", "warping_error")


def headline(metrics: dict) -> dict:
    return {key: metrics[key] for key in HEADLINE_KEYS}
