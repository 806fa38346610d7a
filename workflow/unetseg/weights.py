"""The paper's pixel-wise loss weights (§3, Eq. 2), computed slice by slice with Dask.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1, d2: distances to the nearest and second-nearest cell. The border term is applied to
background pixels only (the separation borders it is meant to emphasise). w_c balances the class
frequencies of the slice: w_c(x) = n_max / n_class(x), so the more frequent class weighs 1 and the
rarer one n_max / n_rare. Unannotated pixels (the labels' ignore label, for sparse annotation)
weigh 0, so the loss leaves them out, and the class counts are those of the annotated pixels.
"""

from __future__ import annotations

import logging
import math
import os

import dask.array as da
import numba
import numpy as np
from scipy import ndimage

from unetseg import io, labels

log = logging.getLogger(__name__)

# Border-term contributions below this are dropped: it bounds the error against an exact map.
NEGLIGIBLE_WEIGHT = 1e-6


def class_balance(interior: np.ndarray, annotated: np.ndarray | None = None) -> np.ndarray:
    """w_c per pixel: n_max / n_class, counted over this slice's annotated pixels."""
    if annotated is None:
        annotated = np.ones(interior.shape, bool)
    counts = np.array(
        [np.count_nonzero(~interior & annotated), np.count_nonzero(interior & annotated)], float
    )
    present = counts > 0
    weight_per_class = np.ones(2)
    if present.any():  # else a slice with nothing annotated
        weight_per_class[present] = counts[present].max() / counts[present]
    return weight_per_class[interior.astype(int)]


def two_nearest_cell_distances(cell_ids: np.ndarray, max_distance_px: float):
    """(d1, d2) for every pixel, exact up to `max_distance_px` and inf beyond.

    Each cell's distance transform is computed only in its bounding box grown by the cut-off,
    instead of over the whole image: this is what makes the map fast on many-cell slices.
    """
    margin = math.ceil(max_distance_px) + 1
    boxes = [
        (index, *(bound for s, size in zip(box, cell_ids.shape, strict=True)
                  for bound in (max(s.start - margin, 0), min(s.stop + margin, size))))
        for index, box in enumerate(ndimage.find_objects(cell_ids), start=1)
        if box is not None
    ]  # fmt: skip
    d1 = np.full(cell_ids.shape, np.inf)
    d2 = np.full(cell_ids.shape, np.inf)
    windows = np.array(boxes, dtype=np.int64).reshape(-1, 5)
    _two_nearest_in_windows(cell_ids, windows, max_distance_px**2, d1, d2)
    return d1, d2


# Stands in for infinity in the distance transform; finite, so parabola intersections stay finite.
FAR = 1e20


@numba.njit(cache=True, nogil=True)
def _two_nearest_in_windows(cell_ids, windows, max_squared, d1, d2):
    """For each (cell, y0, y1, x0, x1): the cell's exact distance transform in that window, folded
    into the running nearest (d1) and second-nearest (d2) distances."""
    size = max(cell_ids.shape) + 1
    column, line = np.empty(size), np.empty(size)
    parabolas, bounds = np.empty(size, np.int64), np.empty(size + 1)
    for cell, y0, y1, x0, x1 in windows:
        height, width = y1 - y0, x1 - x0
        squared = np.empty((width, height))  # transposed: the second pass reads rows
        for x in range(width):  # along columns, binary input: two scans give the 1D distance
            _squared_distance_to_cell_1d(cell_ids[y0:y1, x0 + x], cell, squared[x])
        for y in range(height):  # along rows: the lower envelope of parabolas
            column[:width] = squared[:, y]
            _squared_distance_1d(column, width, line, parabolas, bounds)
            near1, near2 = d1[y0 + y, x0:x1], d2[y0 + y, x0:x1]
            for x in range(width):
                if line[x] > max_squared:
                    continue
                distance = math.sqrt(line[x])
                if distance < near1[x]:
                    near2[x] = near1[x]
                    near1[x] = distance
                elif distance < near2[x]:
                    near2[x] = distance


@numba.njit(cache=True, nogil=True)
def _squared_distance_to_cell_1d(ids, cell, out):
    """Squared distance along a line to the nearest pixel of `cell` (FAR if there is none)."""
    last = -1
    for i in range(ids.size):
        if ids[i] == cell:
            last = i
        out[i] = FAR if last < 0 else (i - last) ** 2
    last = -1
    for i in range(ids.size - 1, -1, -1):
        if ids[i] == cell:
            last = i
        if last >= 0:
            out[i] = min(out[i], (last - i) ** 2)


@numba.njit(cache=True, nogil=True)
def _squared_distance_1d(f, n, out, parabolas, bounds):
    """Lower envelope of parabolas (Felzenszwalb & Huttenlocher 2012): out[q] = min_p (q-p)² + f[p]."""
    k = 0
    parabolas[0] = 0
    bounds[0], bounds[1] = -np.inf, np.inf
    for q in range(1, n):
        while True:  # ends at k == 0 at the latest: bounds[0] is -inf and s is finite
            p = parabolas[k]
            s = ((f[q] + q * q) - (f[p] + p * p)) / (2 * q - 2 * p)
            if s > bounds[k]:
                break
            k -= 1
        k += 1
        parabolas[k] = q
        bounds[k], bounds[k + 1] = s, np.inf
    k = 0
    for q in range(n):
        while bounds[k + 1] < q:
            k += 1
        p = parabolas[k]
        out[q] = (q - p) * (q - p) + f[p]


def weight_map(
    cell_ids: np.ndarray,
    interior: np.ndarray,
    w0: float,
    sigma_px: float,
    annotated: np.ndarray | None = None,
):
    """Eq. 2 for one slice; `cell_ids` labels the cells, `interior` is the foreground mask, and
    pixels outside `annotated` (default: all annotated) weigh 0."""
    if annotated is None:
        annotated = np.ones(interior.shape, bool)
    weights = class_balance(interior, annotated)
    weights[~annotated] = 0
    if w0 <= 0:
        return weights.astype(np.float32)
    cut_off = sigma_px * math.sqrt(2 * math.log(w0 / NEGLIGIBLE_WEIGHT))
    d1, d2 = two_nearest_cell_distances(cell_ids, cut_off)
    with np.errstate(invalid="ignore"):
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma_px**2))
    border[~np.isfinite(d2)] = 0
    weights += np.where(~interior & annotated, border, 0.0)
    return weights.astype(np.float32)


def weight_volume(
    label_volume: np.ndarray, kind: str, w0: float, sigma_px: float, ignore: int | None = None
):
    """Weight maps of a (z, y, x) block of labels, slice by slice."""
    out = np.empty(label_volume.shape, np.float32)
    for z, slice_labels in enumerate(label_volume):
        out[z] = weight_map(
            labels.cells(slice_labels, kind, ignore),
            labels.interior(slice_labels, kind, ignore),
            w0,
            sigma_px,
            None if ignore is None else labels.annotated(slice_labels, ignore),
        )
    return out


def compute_weights(
    labels_path: str | os.PathLike,
    out_path: str | os.PathLike,
    w0: float = 10.0,
    sigma_px: float = 5.0,
    workers: int = 1,
) -> None:
    """Weight maps of a label store into an OME-Zarr store, one Dask task per z-chunk."""
    source = io.open_zarr(labels_path)
    kind, ignore = labels.store_conventions(labels_path)
    z_chunk = source.chunks[0]
    stack = da.from_zarr(source).rechunk((z_chunk, *source.shape[1:]))
    weights = stack.map_blocks(weight_volume, kind, w0, sigma_px, ignore, dtype=np.float32)
    with io.atomic_output(out_path) as tmp:
        target = io.create_ome_zarr(
            tmp,
            source.shape,
            np.float32,
            source.chunks,
            io.voxel_size(labels_path),
            attrs={"w0": w0, "sigma_px": sigma_px, "label_kind": kind, "ignore_label": ignore},
        )
        da.store(weights, target, lock=False, scheduler="threads", num_workers=workers)
    log.info("wrote weight maps of %d slices to %s", source.shape[0], out_path)
