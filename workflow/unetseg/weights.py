"""The paper's pixel-wise loss weights (§3, Eq. 2), computed by blocks of a slice with Dask.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1, d2: distances to the nearest and second-nearest cell. The border term is applied to
background pixels only (the separation borders it is meant to emphasise). w_c balances the class
frequencies of the slice: w_c(x) = n_max / n_class(x), so the more frequent class weighs 1 and the
rarer one n_max / n_rare. Unannotated pixels (the labels' ignore label, for sparse annotation)
weigh 0, so the loss leaves them out, and the class counts are those of the annotated pixels.

The border term is dropped where it falls under NEGLIGIBLE_WEIGHT, so a pixel's weight depends only
on the cells within that reach: a block computed from the labels around it, with the slice's
class counts and cells, equals the whole-slice map exactly.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass

import dask
import numba
import numpy as np
import zarr
from scipy import ndimage

from unetseg import blocks, io, labels

log = logging.getLogger(__name__)

# Border-term contributions below this are dropped: it bounds the error against an exact map.
NEGLIGIBLE_WEIGHT = 1e-6


def class_counts(interior: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """(background, interior) pixel counts among the annotated pixels."""
    return np.array(
        [np.count_nonzero(~interior & annotated), np.count_nonzero(interior & annotated)], np.int64
    )


def class_balance(
    interior: np.ndarray, annotated: np.ndarray | None = None, counts: np.ndarray | None = None
) -> np.ndarray:
    """w_c per pixel: n_max / n_class, with the class `counts` of the slice (by default those
    of these pixels, annotated ones only)."""
    if annotated is None:
        annotated = np.ones(interior.shape, bool)
    if counts is None:
        counts = class_counts(interior, annotated)
    counts = np.asarray(counts, float)
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


def border_reach_px(w0: float, sigma_px: float) -> float:
    """Distance d1 + d2 beyond which the border term is under NEGLIGIBLE_WEIGHT and dropped: no
    cell farther than this from a pixel changes its weight."""
    if w0 <= NEGLIGIBLE_WEIGHT:
        return 0.0
    return sigma_px * math.sqrt(2 * math.log(w0 / NEGLIGIBLE_WEIGHT))


def weight_map(
    cell_ids: np.ndarray,
    interior: np.ndarray,
    w0: float,
    sigma_px: float,
    annotated: np.ndarray | None = None,
    counts: np.ndarray | None = None,
):
    """Eq. 2 for one slice; `cell_ids` labels the cells, `interior` is the foreground mask, and
    pixels outside `annotated` (default: all annotated) weigh 0. Of a window of a slice, give
    the slice's class `counts` (class_counts)."""
    if annotated is None:
        annotated = np.ones(interior.shape, bool)
    weights = class_balance(interior, annotated, counts)
    weights[~annotated] = 0
    cut_off = border_reach_px(w0, sigma_px)
    if cut_off <= 0:
        return weights.astype(np.float32)
    d1, d2 = two_nearest_cell_distances(cell_ids, cut_off)
    with np.errstate(invalid="ignore"):
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma_px**2))
    border[~np.isfinite(d2)] = 0
    weights += np.where(~interior & annotated, border, 0.0)
    return weights.astype(np.float32)


def weight_volume(
    label_volume: np.ndarray, kind: str, w0: float, sigma_px: float, ignore: int | None = None
):
    """Weight maps of a (z, y, x) block of whole label slices, slice by slice."""
    out = np.empty(label_volume.shape, np.float32)
    for z, slice_labels in enumerate(label_volume):
        out[z] = weight_map(
            labels.cells(slice_labels, kind, ignore),
            labels.interior(slice_labels, kind, ignore),
            w0,
            sigma_px,
            labels.annotated(slice_labels, ignore),
        )
    return out


# A task computes the weights of a block of at most this many pixels a side (whole chunks), from
# the labels around it within the border term's reach: its memory does not grow with the slice.
BLOCK_PX = 1024


@dataclass(frozen=True)
class Block:
    """Slices zs (one z-chunk) of the output region (ys, xs) (whole chunks), and the window of
    labels that its weights depend on: the region grown by `halo` px, cut to the slice."""

    zs: slice
    ys: slice
    xs: slice
    halo: int
    shape_yx: tuple[int, int]

    @property
    def window(self) -> tuple[slice, slice]:
        return tuple(
            slice(max(s.start - self.halo, 0), min(s.stop + self.halo, size))
            for s, size in zip((self.ys, self.xs), self.shape_yx, strict=True)
        )

    @property
    def core(self) -> tuple[slice, slice]:
        """The region within the window."""
        return tuple(
            slice(s.start - w.start, s.stop - w.start)
            for s, w in zip((self.ys, self.xs), self.window, strict=True)
        )

    @property
    def whole_slice(self) -> bool:
        return (self.ys.stop - self.ys.start, self.xs.stop - self.xs.start) == self.shape_yx


def weight_blocks(shape, chunks, halo: int, block_px: int = BLOCK_PX) -> list[Block]:
    """Chunk-aligned blocks that cover a (z, y, x) volume: no two write to one chunk."""
    step_y, step_x = (max(block_px // c, 1) * c for c in chunks[1:])
    return [
        Block(slice(z, min(z + chunks[0], shape[0])), ys, xs, halo, tuple(shape[1:]))
        for z in range(0, shape[0], chunks[0])
        for ys, xs in blocks.chunk_windows(shape[1:], (step_y, step_x))
    ]


def block_class_counts(source, block: Block, kind: str, ignore: int | None) -> np.ndarray:
    """(z, 2): each slice's (background, interior) counts within the block's region (the window
    around it decides which instance pixels are borders)."""
    counts = []
    for z in range(block.zs.start, block.zs.stop):
        window = blocks.read_window(source, z, *block.window)
        interior = labels.interior(window, kind, ignore)
        counts.append(
            class_counts(interior[block.core], labels.annotated(window, ignore)[block.core])
        )
    return np.stack(counts)


def block_weights(
    source, cell_store, block: Block, kind: str, ignore, slice_counts, w0: float, sigma_px: float
) -> np.ndarray:
    """Weights of the block's region, computed on its window: equal to those of the whole slice,
    as every cell within the border term's reach of the region lies in the window. Cell ids come
    from `cell_store` (binary labels: components of the whole slice, as a window may cut a cell
    in two) or from the labels themselves."""
    out = []
    for z in range(block.zs.start, block.zs.stop):
        window = blocks.read_window(source, z, *block.window)
        if cell_store is not None:
            ids = blocks.read_window(cell_store, z, *block.window)
        else:  # instance ids, or binary labels of a whole slice in one window
            ids = labels.cells(window, kind, ignore)
        weights = weight_map(
            ids,
            labels.interior(window, kind, ignore),
            w0,
            sigma_px,
            labels.annotated(window, ignore),
            slice_counts[z],
        )
        out.append(weights[block.core])
    return np.stack(out)


def label_binary_cells(source, path, ignore: int | None, compute) -> zarr.Array:
    """The 4-connected cells of every slice of binary labels into a scratch Zarr array, a chunk
    at a time (labels.label_slice_by_chunks), so that windows see whole-slice cells."""
    cell_store = labels.scratch_ids(path, source.shape, (1, *source.chunks[1:]))
    interior = functools.partial(labels.interior, kind=labels.BINARY, ignore=ignore)
    label = dask.delayed(labels.label_slice_by_chunks)
    compute(*(label(source, cell_store, z, interior, 0) for z in range(source.shape[0])))
    return cell_store


def compute_weights(
    labels_path: str | os.PathLike,
    out_path: str | os.PathLike,
    w0: float = 10.0,
    sigma_px: float = 5.0,
    workers: int = 1,
    block_px: int = BLOCK_PX,
) -> None:
    """Weight maps of a label store into an OME-Zarr store, one Dask task per block of at most
    `block_px` a side, in memory that does not grow with the slice: a pass counts each slice's
    classes, then each block is computed from the labels within the border term's reach."""
    source = io.open_zarr(labels_path)
    kind, ignore = labels.store_conventions(labels_path)
    halo = math.ceil(border_reach_px(w0, sigma_px)) + 1  # + 1: instance borders look 1 px out
    tasks = weight_blocks(source.shape, source.chunks, halo, block_px)
    compute = functools.partial(dask.compute, scheduler="threads", num_workers=workers)
    count = dask.delayed(block_class_counts)
    slice_counts = np.zeros((source.shape[0], 2), np.int64)
    block_counts = compute(*(count(source, block, kind, ignore) for block in tasks))
    for block, counts in zip(tasks, block_counts, strict=True):
        slice_counts[block.zs] += counts
    with io.atomic_output(out_path) as tmp, io.scratch_path(out_path) as scratch:
        target = io.create_ome_zarr(
            tmp,
            source.shape,
            np.float32,
            source.chunks,
            io.voxel_size(labels_path),
            attrs={"w0": w0, "sigma_px": sigma_px, "label_kind": kind, "ignore_label": ignore},
        )
        cell_store = None
        if kind == labels.BINARY and not all(b.whole_slice for b in tasks):
            cell_store = label_binary_cells(source, scratch, ignore, compute)

        def write(block: Block) -> None:
            weights = block_weights(
                source, cell_store, block, kind, ignore, slice_counts, w0, sigma_px
            )
            blocks.write_block(target, (block.zs.start, block.ys.start, block.xs.start), weights)

        compute(*(dask.delayed(write)(block) for block in tasks))
    log.info(
        "wrote weight maps of %d slices (%d blocks) to %s", source.shape[0], len(tasks), out_path
    )
