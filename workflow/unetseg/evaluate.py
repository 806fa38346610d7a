"""ISBI 2012 metrics as Fiji's trainableSegmentation scored the challenge (shared METRICS.md).

Pixel error and foreground-restricted Rand error: 1 - max F over 11 thresholds; warping error:
min over 10 thresholds of (split + merger pixels) / pixels, after simple-point warping. Counts are
summed over slices before F (micro-average). Prediction = probability of cell interior, compared
as float32 widened to double: interior iff p > t.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from unetseg import labels
from unetseg.errors import UnetsegError
from unetseg.labels import FOUR_CONNECTED, INSTANCE

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
    """probability > threshold as its float32 values compare in float64 (as the metrics count
    them), without a float64 copy."""
    return probability.astype(np.float32, copy=False) > float32_threshold(threshold)


def float32_threshold(threshold: float) -> np.float32:
    """The float32 t with (x > t) == (float64(x) > threshold) for every float32 x: the threshold
    rounded down to float32."""
    rounded = np.float32(threshold)
    above = np.float64(rounded) > threshold  # in float64: numpy would compare in float32
    return np.nextafter(rounded, np.float32(-np.inf)) if above else rounded


# --- pixel error -----------------------------------------------------------------------------


def pixel_counts(truth: np.ndarray, probability: np.ndarray, thresholds) -> np.ndarray:
    """(thresholds, 3) TP, FP, FN of the interior class for one slice."""
    interior = truth > 0
    values = probability.astype(np.float32).astype(np.float64)
    # Counts of values > t for all t at once, from the sorted values of each class.
    inside = np.sort(values[interior])
    outside = np.sort(values[~interior])
    t = np.asarray(thresholds)
    tp = inside.size - np.searchsorted(inside, t, side="right")
    fp = outside.size - np.searchsorted(outside, t, side="right")
    return np.stack([tp, fp, inside.size - tp], axis=1).astype(np.int64)


# --- Rand error ------------------------------------------------------------------------------


# Above this many (truth, prediction) label pairs, overlaps are counted by sorting instead.
MAX_PAIR_TABLE = 1 << 22


@numba.njit(cache=True, nogil=True)
def _pair_sums(truth_ids, predicted_ids, n_truth, n_predicted):
    """(Σ n_ij², Σ C(n_ij, 2), Σ b_j², Σ C(b_j, 2), singletons) over GT-interior pixels."""
    table = np.zeros((n_truth + 1) * (n_predicted + 1), np.int64)
    b = np.zeros(n_predicted + 1, np.int64)
    singletons = 0
    for index in range(truth_ids.size):
        i, j = truth_ids.flat[index], predicted_ids.flat[index]
        if i == 0:
            continue
        if j == 0:
            singletons += 1
        else:
            table[i * (n_predicted + 1) + j] += 1
            b[j] += 1
    square_n = pairs_n = square_b = pairs_b = 0
    for count in table:
        square_n += count * count
        pairs_n += count * (count - 1) // 2
    for count in b:
        square_b += count * count
        pairs_b += count * (count - 1) // 2
    return square_n, pairs_n, square_b, pairs_b, singletons


def pair_sums(truth_ids, predicted_ids, n_truth: int, n_predicted: int):
    if (n_truth + 1) * (n_predicted + 1) <= MAX_PAIR_TABLE:
        return _pair_sums(truth_ids, predicted_ids, n_truth, n_predicted)
    foreground = truth_ids > 0
    in_segment = foreground & (predicted_ids > 0)
    pair_index = (
        truth_ids[in_segment].astype(np.int64) * (n_predicted + 1) + predicted_ids[in_segment]
    )
    n_ij = np.unique(pair_index, return_counts=True)[1].astype(np.int64)
    b = np.bincount(predicted_ids[in_segment], minlength=n_predicted + 1).astype(np.int64)
    singletons = int(np.count_nonzero(foreground)) - int(np.count_nonzero(in_segment))
    return (
        int((n_ij**2).sum()), int((n_ij * (n_ij - 1) // 2).sum()),
        int((b**2).sum()), int((b * (b - 1) // 2).sum()), singletons,
    )  # fmt: skip


def rand_counts(truth: np.ndarray, probability: np.ndarray, thresholds):
    """(N², pairs) arrays of (thresholds, 3) TP, FP, FN of pixel pairs, for one slice.

    Foreground-restricted. Float because Fiji's N² counts of a slice without GT interior are NaN.
    """
    truth_ids, n_truth = ndimage.label(truth > 0, structure=FOUR_CONNECTED, output=np.int32)
    a = np.bincount(truth_ids.ravel(), minlength=n_truth + 1)[1:].astype(np.int64)
    a_square, a_pairs = int((a**2).sum()), int((a * (a - 1) // 2).sum())
    values = probability.astype(np.float32).astype(np.float64)
    n2_rows, pairs_rows = [], []
    for threshold in thresholds:
        predicted_ids, n_predicted = ndimage.label(
            values > threshold, structure=FOUR_CONNECTED, output=np.int32
        )
        square_n, pairs_n, square_b, pairs_b, singletons = pair_sums(
            truth_ids, predicted_ids, n_truth, n_predicted
        )
        tp = square_n + singletons
        n2_rows.append((tp, square_b + singletons - tp, a_square - tp))
        pairs_rows.append((pairs_n, pairs_b - pairs_n, a_pairs - pairs_n))
    n2_counts = np.array(n2_rows, dtype=np.float64)
    if a.sum() == 0:
        n2_counts[:] = np.nan
    return n2_counts, np.array(pairs_rows, dtype=np.float64)


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


@numba.njit(cache=True, nogil=True)
def _warp(source: np.ndarray, target: np.ndarray, keys: np.ndarray, simple: np.ndarray) -> None:
    """Flip simple mismatching pixels of `source` towards `target`, in place (METRICS.md §6.2).

    `source` carries a one-pixel membrane frame (pixels outside the image count as membrane).
    """
    height, width = target.shape
    rows = np.empty(height * width, np.int64)
    cols = np.empty(height * width, np.int64)
    while True:
        n = 0
        for x in range(width):  # column-major scan: ties go by column, then row
            for y in range(height):
                if source[y + 1, x + 1] != target[y, x]:
                    rows[n], cols[n] = y, x
                    n += 1
        if n == 0:
            return
        order_keys = np.empty(n, np.float32)
        for i in range(n):
            order_keys[i] = -keys[rows[i], cols[i]]  # larger key first
        order = np.argsort(order_keys, kind="mergesort")
        flipped = 0
        for i in order:
            y, x = rows[i] + 1, cols[i] + 1
            code = (
                source[y - 1, x - 1]
                | source[y - 1, x] << 1
                | source[y - 1, x + 1] << 2
                | source[y, x + 1] << 3
                | source[y + 1, x + 1] << 4
                | source[y + 1, x] << 5
                | source[y + 1, x - 1] << 6
                | source[y, x - 1] << 7
            )
            if simple[code]:
                source[y, x] = 1 - source[y, x]
                flipped += 1
        if flipped == 0:
            return


@numba.njit(cache=True, nogil=True)
def _object_split_by_cut(warped: np.ndarray, y: int, x: int, radius: int) -> bool:
    """Would making interior pixel (y, x) membrane split its object? (METRICS.md §6.3).

    Flood-fills (4-connected) from one interior 8-neighbour inside the (2r+1)² window (or the
    whole image for small images) and checks that it reaches every other interior 8-neighbour.
    """
    height, width = warped.shape
    if radius < 1 or radius > width or radius > height:
        y0, y1, x0, x1 = 0, height, 0, width
    else:
        y0, y1, x0, x1 = y - radius, y + radius + 1, x - radius, x + radius + 1
    seen = np.zeros((y1 - y0, x1 - x0), np.bool_)
    seen[y - y0, x - x0] = True  # the cut pixel is membrane now
    start_y, start_x, n_neighbours = -1, -1, 0
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            ny, nx = y + dy, x + dx
            if (dy or dx) and 0 <= ny < height and 0 <= nx < width and warped[ny, nx]:
                n_neighbours += 1
                start_y, start_x = ny, nx
    if n_neighbours == 0:
        return False
    stack = [(start_y, start_x)]
    seen[start_y - y0, start_x - x0] = True
    while stack:
        cy, cx = stack.pop()
        for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
            inside = y0 <= ny < y1 and x0 <= nx < x1 and 0 <= ny < height and 0 <= nx < width
            if inside and warped[ny, nx] and not seen[ny - y0, nx - x0]:
                seen[ny - y0, nx - x0] = True
                stack.append((ny, nx))
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            ny, nx = y + dy, x + dx
            inside = 0 <= ny < height and 0 <= nx < width
            if (dy or dx) and inside and warped[ny, nx] and not seen[ny - y0, nx - x0]:
                return True
    return False


@numba.njit(cache=True, nogil=True)
def _classify(warped, target, ids, radius: int, marks):
    """(split pixels, merger pixels) among the mismatches left after warping (METRICS.md §6.3).

    Marks each split pixel 1 and each merger pixel 2 in `marks`.
    """
    height, width = warped.shape
    splits = mergers = 0
    for y in range(height):
        for x in range(width):
            if warped[y, x] == target[y, x]:
                continue
            first_object, objects, membrane_seen = 0, 0, False
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    ny, nx = y + dy, x + dx
                    if not (dy or dx) or not (0 <= ny < height and 0 <= nx < width):
                        continue
                    label = ids[ny, nx]
                    if label == 0:
                        membrane_seen = True
                    elif objects == 0:
                        first_object, objects = label, 1
                    elif label != first_object:
                        objects = 2
            interior = warped[y, x] == 1
            if objects >= 2:
                if interior:
                    splits += 1
                    marks[y, x] = 1
                else:
                    mergers += 1
                    marks[y, x] = 2
            elif (
                objects == 1
                and membrane_seen
                and interior
                and _object_split_by_cut(warped, y, x, radius)
            ):
                splits += 1
                marks[y, x] = 1
    return splits, mergers


def topology_errors(truth: np.ndarray, probability: np.ndarray, threshold: float, marks=None):
    """(split pixels, merger pixels) of one slice at one threshold.

    If `marks` (int8, shape of the slice) is given, split pixels are set to 1, mergers to 2.
    """
    target = binarize(probability, threshold).astype(np.uint8)
    source = np.zeros((truth.shape[0] + 2, truth.shape[1] + 2), np.uint8)
    source[1:-1, 1:-1] = truth > 0
    keys = np.abs(probability.astype(np.float32).astype(np.float64) - threshold).astype(np.float32)
    _warp(source, target, keys, SIMPLE_LOOKUP)
    warped = np.ascontiguousarray(source[1:-1, 1:-1])
    ids, _ = ndimage.label(warped, structure=FOUR_CONNECTED)
    marks = np.zeros(truth.shape, np.int8) if marks is None else marks
    return _classify(warped, target, ids.astype(np.int32), WARPING_RADIUS_PX, marks)


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
        *rand_counts(truth, probability, PIXEL_RAND_THRESHOLDS),
        warping_counts(truth, probability, WARPING_THRESHOLDS),
    )


def summarize_f(counts: np.ndarray) -> dict:
    best, index, scores = best_f(counts)
    return {
        "error": 1.0 - best,
        "best_threshold": PIXEL_RAND_THRESHOLDS[index],
        "f_scores": scores,
        "counts": counts.tolist(),  # TP, FP, FN per threshold: lets volumes be pooled later
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


def as_stack(volume, name: str):
    """A volume indexed by slice: NumPy arrays as they are (a 2D one as one slice), and io.Slices
    or Zarr arrays, which each task reads a slice of."""
    if isinstance(volume, np.ndarray) and volume.ndim == 2:
        return volume[np.newaxis]
    if len(volume.shape) != 3:
        raise UnetsegError(f"{name}: shape {volume.shape} is not (z, y, x) or (y, x)")
    return volume


def stack_pair(truth, prediction, names: tuple[str, str]):
    """Truth and prediction as stacks (`as_stack`) of one shape, else an error naming both."""
    truth, prediction = as_stack(truth, names[0]), as_stack(prediction, names[1])
    if tuple(truth.shape) != tuple(prediction.shape):
        raise UnetsegError(
            f"{names[1]}: shape {tuple(prediction.shape)} does not match truth {names[0]} "
            f"shape {tuple(truth.shape)}"
        )
    return truth, prediction


def check_slice(probability: np.ndarray, name: str, z: int) -> None:
    if probability.dtype.kind == "f":
        finite = np.isfinite(probability)
        if not finite.all() or probability.min() < 0 or probability.max() > 1:
            raise UnetsegError(
                f"{name}: probabilities must be finite and within [0, 1] (slice {z})"
            )
    elif not set(np.unique(probability).tolist()) <= {0, 1, 255}:
        raise UnetsegError(f"{name}: integer predictions must be binary (0/1 or 0/255) (slice {z})")


def as_probability(prediction: np.ndarray) -> np.ndarray:
    """Float32 probabilities; a binary 0/255 or 0/1 map becomes 0.0/1.0 (ImageJ's `> 0`)."""
    if prediction.dtype.kind == "f":
        return prediction.astype(np.float32)
    return (prediction > 0).astype(np.float32)


def read_pair(truth, prediction, z: int, names: tuple[str, str]):
    """Slice z of the truth and of the prediction (as probabilities), checked."""
    probability = np.asarray(prediction[z])
    check_slice(probability, names[1], z)
    return np.asarray(truth[z]), as_probability(probability)


def evaluate_arrays(
    truth, prediction, workers: int = 1, names: tuple[str, str] = ("truth", "prediction")
) -> dict:
    """All metrics of a (z, y, x) or (y, x) stack; slices evaluated in parallel with Dask.

    `truth` and `prediction` are NumPy arrays, or volumes read a slice at a time (io.Slices,
    Zarr arrays): each task reads its own slices, so memory holds `workers` slices at a time,
    whatever the stack's depth. `names` name them in errors (their paths, from the CLI).
    """
    import dask

    truth, prediction = stack_pair(truth, prediction, names)

    def counts(z):
        return slice_counts(*read_pair(truth, prediction, z, names))

    def table(z, threshold):
        return slice_contingency(*read_pair(truth, prediction, z, names), threshold)

    depth, slice_pixels = truth.shape[0], truth.shape[1] * truth.shape[2]
    compute = functools.partial(dask.compute, scheduler="threads", num_workers=workers)
    per_slice = compute(*[dask.delayed(counts)(z) for z in range(depth)])
    metrics = summarize(list(per_slice), depth * slice_pixels)
    threshold = metrics["rand"]["best_threshold"]
    tables = compute(*[dask.delayed(table)(z, threshold) for z in range(depth)])
    metrics["skimage"] = skimage_comparison(list(tables), threshold)
    metrics["per_slice"] = [
        {"slice": z, **headline(summarize([counts], slice_pixels))}
        for z, counts in enumerate(per_slice)
    ]
    return metrics


@dataclass
class Contingency:
    """One slice's overlaps of GT cells (4-connected components of truth > 0, GT membrane left
    out) with predicted cells (components of p > threshold, 0 = predicted membrane): `pairs`
    (n, 2) of (GT id, predicted id) and their pixel `counts`, ids from 1 within the slice."""

    pairs: np.ndarray
    counts: np.ndarray
    n_truth: int
    n_predicted: int


def slice_contingency(truth: np.ndarray, probability: np.ndarray, threshold: float) -> Contingency:
    truth_ids, n_truth = ndimage.label(truth > 0, structure=FOUR_CONNECTED)
    predicted_ids, n_predicted = ndimage.label(
        binarize(probability, threshold), structure=FOUR_CONNECTED
    )
    scored = truth_ids > 0
    keys = truth_ids[scored].astype(np.int64) * (n_predicted + 1) + predicted_ids[scored]
    keys, counts = np.unique(keys, return_counts=True)
    return Contingency(np.stack(np.divmod(keys, n_predicted + 1), axis=1), counts, n_truth,
                       n_predicted)  # fmt: skip


def stack_table(tables: list[Contingency]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(GT ids, predicted ids, counts) of the whole stack's contingency table, ids unique across
    slices: each slice's cells are their own, predicted membrane is one segment (id 0)."""
    rows, cols, counts = [], [], []
    truth_offset = predicted_offset = 0
    for table in tables:
        rows.append(table.pairs[:, 0] + truth_offset)
        predicted = table.pairs[:, 1]
        cols.append(np.where(predicted > 0, predicted + predicted_offset, 0))
        counts.append(table.counts)
        truth_offset += table.n_truth
        predicted_offset += table.n_predicted
    return tuple(np.concatenate(parts).astype(np.int64) for parts in (rows, cols, counts))


def skimage_comparison(tables: list[Contingency], threshold: float) -> dict:
    """scikit-image's adapted Rand error and variation of information, for comparison only.

    At the best Rand threshold; GT membrane (label 0) ignored, as skimage does by default. From
    the slices' contingency tables, so the stack is never held whole: the adapted Rand error by
    skimage's own function on the table, the variation of information by its formula (skimage's
    function refuses a table without the images), both equal to skimage on the images (tested).
    """
    from scipy import sparse
    from skimage.metrics import adapted_rand_error

    rows, cols, counts = stack_table(tables)
    if counts.sum() == 0:  # no GT cell, nothing scored: undefined, as skimage has it
        nan = float("nan")
        return {"threshold": threshold, "adapted_rand_error": nan,
                "variation_of_information_split": nan, "variation_of_information_merge": nan}  # fmt: skip
    shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    table = sparse.csr_array((counts.astype(float), (rows, cols)), shape=shape)
    split, merge = variation_of_information(rows, cols, counts)
    return {
        "threshold": threshold,
        "adapted_rand_error": float(adapted_rand_error(table=table)[0]),
        "variation_of_information_split": split,
        "variation_of_information_merge": merge,
    }


def variation_of_information(rows, cols, counts) -> tuple[float, float]:
    """(H(predicted | GT), H(GT | predicted)) in bits, false splits and false merges, of a
    contingency table given as (GT id, predicted id, pixel count) entries."""
    joint = counts / counts.sum()
    truth_marginal = np.bincount(rows, weights=joint)[rows]
    predicted_marginal = np.bincount(cols, weights=joint)[cols]
    split = -np.sum(joint * np.log2(joint / truth_marginal))
    merge = -np.sum(joint * np.log2(joint / predicted_marginal))
    return float(split), float(merge)


HEADLINE_KEYS = ("pixel_error", "rand_error", "rand_error_pairs", "warping_error")


def headline(metrics: dict) -> dict:
    return {key: metrics[key] for key in HEADLINE_KEYS}


# --- instance metrics ------------------------------------------------------------------------

IOU_THRESHOLDS = [round(0.5 + 0.05 * k, 2) for k in range(10)]


def matched_ious(truth_ids: np.ndarray, predicted_ids: np.ndarray) -> tuple[np.ndarray, int, int]:
    """IoUs of a one-to-one matching of objects maximising total IoU; with the object counts."""
    from scipy.optimize import linear_sum_assignment

    truth_labels, predicted_labels, overlap = overlaps(truth_ids, predicted_ids)
    # Drop background rows and columns (label 0) after the sizes include it.
    truth_sizes, predicted_sizes = overlap.sum(axis=1), overlap.sum(axis=0)
    keep_truth, keep_predicted = truth_labels != 0, predicted_labels != 0
    intersection = overlap[keep_truth][:, keep_predicted]
    union = truth_sizes[keep_truth, None] + predicted_sizes[None, keep_predicted] - intersection
    iou = np.divide(intersection, union, out=np.zeros(intersection.shape), where=union > 0)
    n_truth, n_predicted = iou.shape
    if n_truth == 0 or n_predicted == 0:
        return np.zeros(0), n_truth, n_predicted
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return iou[rows, cols], n_truth, n_predicted


def overlaps(truth_ids: np.ndarray, predicted_ids: np.ndarray):
    """(truth labels, predicted labels, overlap counts) of two id images, background (0)
    included as the first row and column where present."""
    truth_labels, truth_index = np.unique(truth_ids, return_inverse=True)
    predicted_labels, predicted_index = np.unique(predicted_ids, return_inverse=True)
    overlap = np.zeros((truth_labels.size, predicted_labels.size), np.int64)
    np.add.at(overlap, (truth_index.ravel(), predicted_index.ravel()), 1)
    return truth_labels, predicted_labels, overlap


def instance_errors(truth_ids: np.ndarray, predicted_ids: np.ndarray) -> dict[str, list[int]]:
    """The ids of what an instance segmentation got wrong at IoU 0.5, for a person to check:
    `missed` true objects and `false` predicted objects (matched by none), `split` true objects
    (two or more predicted objects lie mostly inside each), `merged` predicted objects (they
    hold most of two or more true objects)."""
    truth_labels, predicted_labels, overlap = overlaps(truth_ids, predicted_ids)
    truth_sizes, predicted_sizes = overlap.sum(axis=1), overlap.sum(axis=0)
    union = truth_sizes[:, None] + predicted_sizes[None, :] - overlap
    matched = (overlap / np.maximum(union, 1) >= 0.5)[truth_labels != 0][:, predicted_labels != 0]
    truth_objects, predicted_objects = (
        truth_labels[truth_labels != 0],
        predicted_labels[predicted_labels != 0],
    )
    inside = overlap[truth_labels != 0][:, predicted_labels != 0]
    mostly_in_truth = inside * 2 > predicted_sizes[None, predicted_labels != 0]
    mostly_of_truth = inside * 2 > truth_sizes[truth_labels != 0, None]
    return {
        "missed": truth_objects[~matched.any(axis=1)].tolist(),
        "false": predicted_objects[~matched.any(axis=0)].tolist(),
        "split": truth_objects[mostly_in_truth.sum(axis=1) >= 2].tolist(),
        "merged": predicted_objects[mostly_of_truth.sum(axis=0) >= 2].tolist(),
    }


def instance_metrics(
    truth,
    predicted,
    kind: str | None = INSTANCE,
    names: tuple[str, str] = ("truth", "segmentation"),
) -> dict:
    """Average precision TP / (TP + FP + FN) per IoU threshold 0.5:0.05:0.95, over all slices.

    `truth` holds instance ids, or a binary mask (`kind`; None: detected from its values) whose
    4-connected components are the cells; `predicted` holds ids. Both are NumPy arrays or
    volumes read a slice at a time; `names` name them in errors. Objects are matched slice by
    slice; counts are summed over slices before the ratio.
    """
    truth, predicted = stack_pair(truth, predicted, names)
    kind = kind or labels.volume_kind(truth, names[0])
    per_slice = []
    for z in range(truth.shape[0]):
        truth_ids = labels.cells(np.asarray(truth[z]), kind)
        ious, n_truth, n_predicted = matched_ious(truth_ids, np.asarray(predicted[z]))
        tp = np.array([np.count_nonzero(ious >= threshold) for threshold in IOU_THRESHOLDS])
        per_slice.append(np.stack([tp, n_predicted - tp, n_truth - tp], axis=1))
    counts = sum(per_slice, np.zeros((len(IOU_THRESHOLDS), 3), np.int64))
    ap = average_precision(counts)
    return {
        "iou_thresholds": IOU_THRESHOLDS,
        "average_precision": ap,
        "ap50": ap[0],
        "mean_ap": float(np.mean(ap)),
        "counts": counts.tolist(),
        # Each slice (an image of a kind: images volume) alone: its objects and AP.
        "per_slice": [
            {
                "slice": z,
                "objects": int(c[0, 0] + c[0, 2]),
                "ap50": average_precision(c)[0],
                "mean_ap": float(np.mean(average_precision(c))),
            }
            for z, c in enumerate(per_slice)
        ],  # fmt: skip
    }


def ap50_counts(truth_ids: np.ndarray, probability: np.ndarray, thresholds) -> np.ndarray:
    """(TP, FP, FN) at IoU 0.5 of the components of probability > each threshold (4-connected,
    as the segment step's plain threshold makes cells) against the true objects `truth_ids`."""
    counts = []
    for threshold in thresholds:
        predicted, _ = ndimage.label(
            probability > float32_threshold(threshold), structure=FOUR_CONNECTED
        )
        ious, n_truth, n_predicted = matched_ious(truth_ids, predicted)
        tp = int(np.count_nonzero(ious >= 0.5))
        counts.append((tp, n_predicted - tp, n_truth - tp))
    return np.array(counts, np.int64)


def average_precision(counts: np.ndarray) -> list[float]:
    """TP / (TP + FP + FN) of each row of (TP, FP, FN) counts; 1 where there is nothing."""
    return [float(tp / (tp + fp + fn)) if tp + fp + fn else 1.0 for tp, fp, fn in counts]
