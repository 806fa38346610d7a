"""Probability of cell interior -> cell instances: threshold, then 4-connected components per
slice, or a seeded watershed inside the thresholded cells (seeds of high probability, or the
peaks of each cell's distance to its border, which split touching round objects such as
nuclei); chunk by chunk, whatever the slice."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import dask
import numpy as np
from scipy import ndimage

from unetseg import blocks, evaluate, io, labels
from unetseg.errors import UnetsegError
from unetseg.labels import FOUR_CONNECTED

log = logging.getLogger(__name__)

# A watershed window beyond this is reported: it takes about 75 bytes a pixel (BENCHMARKS.md,
# segment-watershed-memory), 1.3 GB at 4096².
LARGE_WINDOW_PX = 4096 * 4096
WATERSHED_BYTES_PER_PX = 75
SPLIT_SIGMA_PX = 1.0  # the distance map is smoothed so that its ragged edges make no peaks


def best_threshold(metrics_paths: list[str | os.PathLike], metric: str = "rand") -> float:
    """The threshold with the best F-score of `metric`, pooled over validation volumes."""
    if not metrics_paths:
        raise UnetsegError("segment.threshold: 'auto' needs at least one validate volume")
    pooled = sum(np.array(json.loads(Path(p).read_text())[metric]["counts"]) for p in metrics_paths)
    return evaluate.PIXEL_RAND_THRESHOLDS[evaluate.best_f(pooled)[1]]


def segment_slice(
    probability: np.ndarray,
    threshold: float,
    seed_threshold: float | None = None,
    min_size_px: int = 0,
    split_h: float | None = None,
) -> tuple[np.ndarray, int]:
    """(uint32 instance ids, count) of one slice: components of probability > threshold.

    With `seed_threshold`, components of probability > seed_threshold seed a watershed on
    1 - probability inside the thresholded mask, which splits cells joined by weak membranes
    (`seeded_watershed`). With `split_h`, each cell is split at the peaks of its distance to its
    border (`split_cell`). Cells of fewer than `min_size_px` pixels become background; ids stay
    in raster order (split cells' parts in the order of their cells).
    """
    values = as_float64(probability)
    interior = values > threshold
    if seed_threshold is None and split_h is None and min_size_px <= 1:  # already sequential
        return ndimage.label(interior, structure=FOUR_CONNECTED, output=np.uint32)
    from skimage.segmentation import relabel_sequential

    if split_h is not None:
        ids = split_cells(interior, split_h)
    elif seed_threshold is None:
        ids, _ = ndimage.label(interior, structure=FOUR_CONNECTED)
    else:
        seeds, _ = ndimage.label(values > seed_level(threshold, seed_threshold), FOUR_CONNECTED)
        ids = seeded_watershed(values, interior, seeds)
        # Interior pixels no seed reached keep their own connected component.
        unreached, _ = ndimage.label(interior & (ids == 0), structure=FOUR_CONNECTED)
        ids = np.where(unreached > 0, unreached + ids.max(), ids)
    if min_size_px > 1:
        ids[(np.bincount(ids.ravel()) < min_size_px)[ids]] = 0
    relabelled = relabel_sequential(ids)[0].astype(np.uint32)
    return relabelled, int(relabelled.max())


def split_cells(interior: np.ndarray, h: float) -> np.ndarray:
    """Every 4-connected cell of `interior` split by `split_cell`, numbered cell by cell."""
    cells, _ = ndimage.label(interior, structure=FOUR_CONNECTED)
    ids = np.zeros(cells.shape, np.int64)
    found = 0
    for cell, box in enumerate(ndimage.find_objects(cells), 1):
        mask = cells[box] == cell
        parts = split_cell(mask, h)
        ids[box][mask] = parts[mask] + found
        found += int(parts.max())
    return ids


def split_cell(mask: np.ndarray, h: float) -> np.ndarray:
    """One cell (a boolean mask in its box) split into parts 1..k: a watershed of its distance to
    the border (smoothed by SPLIT_SIGMA_PX) from the distance's peaks at least `h` px high,
    which separates round objects touching at a neck (the classic split of touching nuclei).
    It depends on the cell alone, so windows of whole cells give the slice's result."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    pad = int(4 * SPLIT_SIGMA_PX) + 1
    distance = ndimage.distance_transform_edt(np.pad(mask, pad))
    distance = ndimage.gaussian_filter(distance, SPLIT_SIGMA_PX)[pad:-pad, pad:-pad]
    peaks, n_peaks = ndimage.label(h_maxima(distance, h).astype(bool) & mask, FOUR_CONNECTED)
    if n_peaks <= 1:
        return mask.astype(np.int64)
    return watershed(-distance, peaks, connectivity=1, mask=mask).astype(np.int64)


def as_float64(probability: np.ndarray) -> np.ndarray:
    """Probabilities as the stages compare them: through float32, as the metrics read them."""
    return probability.astype(np.float32).astype(np.float64)


def seed_level(threshold: float, seed_threshold: float) -> float:
    """Seeds lie inside the cells: a seed threshold below the threshold seeds each cell whole."""
    return max(threshold, seed_threshold)


def seeded_watershed(values: np.ndarray, interior: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Watershed of the `seeds` ids on 1 - values, within `interior`; 0 where no seed reaches.

    scikit-image floods the lowest pixel first; of equal ones, the one queued first, so a
    plateau is shared out breadth first. Seed pixels all enter the queue at once, though, and
    those of equal height (common: float16 has 2048 values in [0.5, 1)) leave it in an order
    that depends on everything else queued, i.e. on the whole image. `flooding_heights` orders
    them by raster position, which gives each component of the interior the same result whether
    the image is the slice or a window around the component: what lets `segment_volume` work
    window by window.
    """
    from skimage.segmentation import watershed

    heights = flooding_heights(values, seeds > 0)
    return watershed(heights, seeds, connectivity=1, mask=interior)


def flooding_heights(values: np.ndarray, is_seed: np.ndarray) -> np.ndarray:
    """Heights in the order of 1 - values, in which seed pixels are each their own height, below
    other pixels of the same value and in raster order among themselves; other pixels of equal
    value share one height (scikit-image then floods them in the order they were queued)."""
    flat_seed = is_seed.ravel()
    seeds_first = np.argsort(~flat_seed, kind="stable")  # seeds, then the rest, in raster order
    order = seeds_first[np.argsort(-values.ravel()[seeds_first], kind="stable")]
    ordered_values, ordered_seed = values.ravel()[order], flat_seed[order]
    starts = np.ones(values.size, bool)  # where a new height begins, in flooding order
    starts[1:] = (ordered_values[1:] != ordered_values[:-1]) | ordered_seed[1:] | ordered_seed[:-1]
    heights = np.empty(values.size, np.float64)
    heights[order] = np.cumsum(starts)
    return heights.reshape(values.shape)


def segment_volume(
    probability_path: str | os.PathLike,
    out_path: str | os.PathLike,
    threshold: float = 0.5,
    seed_threshold: float | None = None,
    min_size_px: int = 0,
    workers: int = 1,
    split_h: float | None = None,
) -> int:
    """Segment every slice into an OME-Zarr of uint32 ids, unique across the volume, dropping
    cells of fewer than `min_size_px` pixels; each slice as segment_slice would, one chunk (or,
    for the seeded watershed and the split, one window of whole cells) at a time, whatever the
    slice's size.
    `workers` threads label slices at once; a second pass numbers each slice's cells on from
    the previous slices' count."""
    if min_size_px < 0:
        raise UnetsegError(f"segment.min_size_px: {min_size_px} is negative")
    if split_h is not None and seed_threshold is not None:
        raise UnetsegError("segment: set watershed_seed_threshold or split_h, not both")
    probability = io.open_zarr(probability_path)
    chunks = (1, *probability.chunks[1:])
    compute = functools.partial(dask.compute, scheduler="threads", num_workers=workers)
    with io.atomic_output(out_path) as tmp, io.scratch_path(out_path) as scratch:
        target = io.create_ome_zarr(
            tmp,
            probability.shape,
            np.uint32,
            chunks,
            io.voxel_size(probability_path),
            attrs={
                "threshold": threshold,
                "watershed_seed_threshold": seed_threshold,
                "min_size_px": min_size_px,
                "split_h": split_h,
                "label_kind": "instance",
                "connectivity": 4,
            },
        )
        if seed_threshold is None and split_h is None:
            label = functools.partial(label_slice, probability, target, threshold, min_size_px)
        elif split_h is None:
            cells, seeds = (labels.scratch_ids(scratch / name, probability.shape, chunks)
                            for name in ("cells", "seeds"))  # fmt: skip
            label = functools.partial(flood_slice, probability, target, (threshold, seed_threshold),
                                      min_size_px, (cells, seeds))  # fmt: skip
        else:
            cells = labels.scratch_ids(scratch / "cells", probability.shape, chunks)
            label = functools.partial(split_slice, probability, target, (threshold, split_h),
                                      min_size_px, cells)  # fmt: skip
        labelled = compute(*(dask.delayed(label)(z) for z in range(probability.shape[0])))
        counts = [int(final_ids.max(initial=0)) for final_ids, _ in labelled]
        first_ids = np.cumsum([0, *counts[:-1]]).tolist()
        write = dask.delayed(labels.write_final_ids)
        compute(*(write(target, z, final_ids, first_id, provisional)
                  for z, ((final_ids, provisional), first_id)
                  in enumerate(zip(labelled, first_ids, strict=True))))  # fmt: skip
    log.info(
        "segmented %d cells in %d slices at threshold %s into %s",
        sum(counts), probability.shape[0], threshold, out_path,
    )  # fmt: skip
    return sum(counts)


def label_slice(probability, target, threshold: float, min_size_px: int, z: int):
    """Components of slice z above the threshold, with provisional ids in target: (final ids
    from 1, None: target holds the provisional ids), as labels.write_final_ids takes them."""
    return labels.provisional_ids(probability, target, z, above(threshold), min_size_px), None


def flood_slice(probability, target, thresholds, min_size_px: int, scratch, z: int):
    """segment_slice(probability[z], *thresholds, min_size_px) by windows: (final ids from 1,
    the function that reads a window's provisional ids), as labels.write_final_ids takes them.
    The seeded watershed of a cell (a component of the thresholded mask) depends only on that
    cell (`seeded_watershed`), so it runs on windows of whole cells, never on the slice: memory
    grows with the largest cell, not the slice.

    The cells and the seeds are labelled chunk by chunk into the `scratch` arrays; a pass over
    their chunks finds each cell's bounding box, size and whether it holds a seed. The seeded
    cells whose box starts in one chunk are flooded together in one window, which writes the
    seeds' ids into target. Provisional ids are 1..n_seeds for the seeds' regions, then
    n_seeds + c for the unseeded cell c: segment_slice's order, the seeds' regions in the seeds'
    raster order, then the unseeded cells in theirs."""
    threshold, seed_threshold = thresholds
    cells, seeds = scratch
    n_cells = labels.label_slice_by_chunks(probability, cells, z, above(threshold), 0)
    seed_above = above(seed_level(threshold, seed_threshold))
    n_seeds = labels.label_slice_by_chunks(probability, seeds, z, seed_above, 0)
    box, cell_size, seeded = cell_boxes(cells, seeds, z, n_cells)
    seed_size = np.zeros(n_seeds + 1, np.int64)
    for group in cells_by_starting_chunk(np.flatnonzero(seeded), box, target.chunks[1:]):
        seed_size += flood_window(probability, cells, seeds, target, z, group, box, n_seeds)
    size = np.concatenate([seed_size, np.where(seeded, 0, cell_size)[1:]])
    kept = size >= max(min_size_px, 1)
    kept[0] = False
    final_ids = np.zeros(len(size), np.int64)
    final_ids[kept] = np.arange(1, kept.sum() + 1)

    def provisional(ys: slice, xs: slice) -> np.ndarray:
        flooded = blocks.read_window(target, z, ys, xs).astype(np.int64)
        cell = blocks.read_window(cells, z, ys, xs).astype(np.int64)
        return np.where(flooded > 0, flooded, np.where(cell > 0, n_seeds + cell, 0))

    return final_ids, provisional


def split_slice(probability, target, settings, min_size_px: int, cells, z: int):
    """segment_slice(probability[z], threshold, split_h=h, min_size_px) by windows: (final ids
    from 1, None: target holds the provisional ids), as labels.write_final_ids takes them. Cells
    are labelled chunk by chunk into `cells`; those whose box starts in one chunk are split
    together in one window (`split_cell` depends on the cell alone). Provisional ids are given
    in that order; the final ones follow segment_slice's: cell by cell, parts in their order."""
    threshold, h = settings
    n_cells = labels.label_slice_by_chunks(probability, cells, z, above(threshold), 0)
    box, _, _ = cell_boxes(cells, None, z, n_cells)
    parts = []  # (cell, part, size) of each provisional id from 1
    for group in cells_by_starting_chunk(np.arange(1, n_cells + 1), box, target.chunks[1:]):
        parts += split_window(cells, target, z, group, box, h, len(parts))
    cell, part, size = (np.array([row[k] for row in parts], np.int64) for k in range(3))
    kept = size >= max(min_size_px, 1)
    order = np.lexsort((part, cell))
    final_ids = np.zeros(len(parts) + 1, np.int64)
    ranked = order[kept[order]]
    final_ids[ranked + 1] = np.arange(1, len(ranked) + 1)
    return final_ids, None


def split_window(cells, target, z: int, group, box, h: float, first_id: int) -> list:
    """Split the cells `group` in the window of their boxes, writing provisional ids from
    first_id + 1 into target; returns (cell, part, size) of each id given."""
    ys, xs = group_window(box, group)
    top, left = ys.start, xs.start
    window = blocks.read_window(cells, z, ys, xs)
    ids = np.zeros(window.shape, np.int64)
    parts = []
    for cell in group:
        cell_box = (slice(box[cell, 0] - top, box[cell, 2] - top),
                    slice(box[cell, 1] - left, box[cell, 3] - left))  # fmt: skip
        mask = window[cell_box] == cell
        pieces = split_cell(mask, h)
        ids[cell_box][mask] = pieces[mask] + first_id + len(parts)
        counts = np.bincount(pieces[mask])
        parts += [(int(cell), k, int(counts[k])) for k in range(1, len(counts))]
    write_window(target, z, ys, xs, ids, ids > 0)
    return parts


def group_window(box: np.ndarray, group) -> tuple[slice, slice]:
    """The (ys, xs) window of the boxes of the cells `group`."""
    top, left = box[group, :2].min(axis=0)
    bottom, right = box[group, 2:].max(axis=0)
    return slice(int(top), int(bottom)), slice(int(left), int(right))


def write_window(target, z: int, ys: slice, xs: slice, ids: np.ndarray, inside: np.ndarray):
    """ids where `inside` into target's window (ys, xs), whole chunks read and written."""
    cy, cx = target.chunks[1:]
    wide_ys = slice(ys.start // cy * cy, min(-(-ys.stop // cy) * cy, target.shape[1]))
    wide_xs = slice(xs.start // cx * cx, min(-(-xs.stop // cx) * cx, target.shape[2]))
    region = blocks.read_window(target, z, wide_ys, wide_xs)
    y, x = ys.start - wide_ys.start, xs.start - wide_xs.start
    region[y : y + inside.shape[0], x : x + inside.shape[1]][inside] = ids[inside]
    offset, _ = blocks.window_region(z, wide_ys, wide_xs)
    blocks.write_block(target, offset, region[np.newaxis])


def cell_boxes(cells, seeds, z: int, n_cells: int):
    """(box, size, seeded) of cells 1..n_cells of slice z, read a chunk at a time: box[c] is
    (top, left, bottom, right), bottom and right exclusive; seeded[c]: a seed lies in the cell
    (seeds None: none)."""
    box = np.zeros((n_cells + 1, 4), np.int64)
    box[:, :2] = np.iinfo(np.int64).max
    size = np.zeros(n_cells + 1, np.int64)
    seeded = np.zeros(n_cells + 1, bool)
    for ys, xs in blocks.chunk_windows(cells.shape[1:], cells.chunks[1:]):
        ids = blocks.read_window(cells, z, ys, xs)
        if seeds is not None:
            seeded[ids[blocks.read_window(seeds, z, ys, xs) > 0]] = True
        foreground = ids > 0
        if not foreground.any():
            continue
        # Ids from 1 within the chunk (by subtraction: a sort by np.unique took 4 times as long).
        below = int(ids[foreground].min()) - 1
        local = np.where(foreground, ids - below, 0)
        counts = np.bincount(local.ravel())
        within = np.flatnonzero(counts[1:])  # local id - 1 of the cells in the chunk
        present = within + below + 1
        size[present] += counts[within + 1]
        boxes = ndimage.find_objects(local)
        found = np.array([(boxes[i][0].start, boxes[i][1].start, boxes[i][0].stop,
                           boxes[i][1].stop) for i in within]).reshape(-1, 4)  # fmt: skip
        found += (ys.start, xs.start, ys.start, xs.start)
        box[present, :2] = np.minimum(box[present, :2], found[:, :2])
        box[present, 2:] = np.maximum(box[present, 2:], found[:, 2:])
    seeded[0] = False
    return box, size, seeded


def cells_by_starting_chunk(ids: np.ndarray, box: np.ndarray, chunks_yx):
    """`ids` grouped by the chunk that holds the top left corner of their box, chunk by chunk."""
    start = box[ids, :2] // np.asarray(chunks_yx)
    order = np.lexsort((start[:, 1], start[:, 0]))
    ids, start = ids[order], start[order]
    breaks = np.flatnonzero(np.any(np.diff(start, axis=0) != 0, axis=1)) + 1
    return np.split(ids, breaks) if len(ids) else []


def flood_window(probability, cells, seeds, target, z: int, group, box, n_seeds: int):
    """The seeded watershed of the cells `group` in the window of their boxes, written into
    target as the seeds' ids; returns the pixel count of each seed's region (0 .. n_seeds)."""
    ys, xs = group_window(box, group)
    top, left, bottom, right = ys.start, xs.start, ys.stop, xs.stop
    if (bottom - top) * (right - left) > LARGE_WINDOW_PX:
        log.warning(
            "slice %d: the seeded watershed floods a window of %d x %d px at once (about %.1f GB),"
            " the box of cells that span it; probabilities with no membranes between cells do"
            " that", z, bottom - top, right - left,
            (bottom - top) * (right - left) * WATERSHED_BYTES_PER_PX / 1e9,
        )  # fmt: skip
    inside = np.isin(blocks.read_window(cells, z, ys, xs), group)
    markers = np.where(inside, blocks.read_window(seeds, z, ys, xs), 0)
    values = as_float64(blocks.read_window(probability, z, ys, xs))
    flooded = seeded_watershed(values, inside, markers.astype(np.int64))
    write_window(target, z, ys, xs, flooded, inside)
    return np.bincount(flooded[inside], minlength=n_seeds + 1)


def above(threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    """The foreground of probabilities: probability > threshold (as the metrics count it)."""
    return functools.partial(evaluate.binarize, threshold=threshold)
