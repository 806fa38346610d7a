"""Probability of cell interior -> cell instances: threshold, then 4-connected components per slice."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from unetseg import blocks, evaluate, io
from unetseg.errors import UnetsegError
from unetseg.labels import FOUR_CONNECTED

log = logging.getLogger(__name__)


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
) -> tuple[np.ndarray, int]:
    """(uint32 instance ids, count) of one slice: components of probability > threshold.

    With `seed_threshold`, components of probability > seed_threshold seed a watershed on
    1 - probability inside the thresholded mask, which splits cells joined by weak membranes.
    Cells of fewer than `min_size_px` pixels become background; ids stay in raster order.
    """
    values = probability.astype(np.float32).astype(np.float64)
    interior = values > threshold
    if seed_threshold is None and min_size_px <= 1:  # already sequential: no relabelling
        return ndimage.label(interior, structure=FOUR_CONNECTED, output=np.uint32)
    from skimage.segmentation import relabel_sequential

    if seed_threshold is None:
        ids, _ = ndimage.label(interior, structure=FOUR_CONNECTED)
    else:
        from skimage.segmentation import watershed

        seeds, _ = ndimage.label(values > seed_threshold, structure=FOUR_CONNECTED)
        ids = watershed(1.0 - values, markers=seeds, mask=interior, connectivity=1)
        # Interior pixels no seed reached keep their own connected component.
        unreached, _ = ndimage.label(interior & (ids == 0), structure=FOUR_CONNECTED)
        ids = np.where(unreached > 0, unreached + ids.max(), ids)
    if min_size_px > 1:
        ids[(np.bincount(ids.ravel()) < min_size_px)[ids]] = 0
    relabelled = relabel_sequential(ids)[0].astype(np.uint32)
    return relabelled, int(relabelled.max())


def segment_volume(
    probability_path: str | os.PathLike,
    out_path: str | os.PathLike,
    threshold: float = 0.5,
    seed_threshold: float | None = None,
    min_size_px: int = 0,
) -> int:
    """Segment every slice into an OME-Zarr of uint32 ids, unique across the volume, dropping
    cells of fewer than `min_size_px` pixels. Plain components are found one chunk at a time
    (label_slice_by_chunks), in bounded memory; the seeded watershed takes a whole slice."""
    if min_size_px < 0:
        raise UnetsegError(f"segment.min_size_px: {min_size_px} is negative")
    probability = io.open_zarr(probability_path)
    next_id = 0
    with io.atomic_output(out_path) as tmp:
        target = io.create_ome_zarr(
            tmp,
            probability.shape,
            np.uint32,
            (1, *probability.chunks[1:]),
            io.voxel_size(probability_path),
            attrs={
                "threshold": threshold,
                "watershed_seed_threshold": seed_threshold,
                "min_size_px": min_size_px,
                "label_kind": "instance",
                "connectivity": 4,
            },
        )
        for z in range(probability.shape[0]):
            if seed_threshold is None:
                count = label_slice_by_chunks(
                    probability, target, z, above(threshold), next_id, min_size_px
                )
            else:
                ids, count = segment_slice(probability[z], threshold, seed_threshold, min_size_px)
                ids[ids > 0] += next_id
                target[z] = ids
            next_id += count
    log.info(
        "segmented %d cells in %d slices at threshold %s into %s",
        next_id, probability.shape[0], threshold, out_path,
    )  # fmt: skip
    return next_id


def above(threshold: float) -> Callable[[np.ndarray], np.ndarray]:
    """The foreground of probabilities: probability > threshold (as the metrics count it)."""
    return functools.partial(evaluate.binarize, threshold=threshold)


def label_slice_by_chunks(
    source, target, z: int, foreground: Callable, first_id: int, min_size_px: int = 0
) -> int:
    """4-connected components of foreground(source[z]) (a boolean mask, computed pixel by pixel)
    into target[z], with one chunk of target in memory at a time, whatever the slice's size;
    returns their count. The ids are
    first_id + 1, ... in the order ndimage.label numbers them on the whole slice (the raster
    order of each component's first pixel); components of fewer than `min_size_px` pixels
    become background: the result is that of `segment_slice` on the slice at once.

    Pass 1 labels each chunk on its own, with provisional ids unique in the slice, and notes the
    ids that touch across chunk borders, each id's first pixel and size; pass 2 rewrites each
    chunk with the final id of the component its provisional ids join into."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    width = source.shape[2]
    count, joins = 0, []
    first_pixel = [np.array([-1])]  # provisional id 0, the background, ranks first
    sizes = [np.array([0])]
    last_row = np.zeros(width, np.uint32)  # provisional ids of the row above this chunk row
    last_column = None  # of the chunk to the left, where the chunk does not start a row
    windows = list(blocks.chunk_windows(source.shape[1:], target.chunks[1:]))
    for ys, xs in windows:
        offset, shape = chunk_region(z, ys, xs)
        interior = foreground(blocks.read_block(source, offset, shape)[0])
        ids, found = ndimage.label(interior, structure=FOUR_CONNECTED, output=np.uint32)
        first_y, first_x = first_pixels(ids, found)
        first_pixel.append((ys.start + first_y) * width + xs.start + first_x)
        sizes.append(np.bincount(ids.ravel(), minlength=found + 1)[1:])
        ids[interior] += count
        borders = [(ids[0], last_row[xs])] + ([(ids[:, 0], last_column)] if xs.start else [])
        for here, there in borders:
            touching = (here > 0) & (there > 0)
            joins.append(np.stack([here[touching], there[touching]]))
        last_row[xs], last_column = ids[-1], ids[:, -1].copy()
        blocks.write_block(target, offset, ids[np.newaxis])
        count += found

    edges = np.concatenate(joins, axis=1)
    graph = coo_matrix((np.ones(edges.shape[1], np.int8), tuple(edges)), (count + 1, count + 1))
    n_components, component = connected_components(graph, directed=False)
    first_of_component = np.full(n_components, np.iinfo(np.int64).max)
    np.minimum.at(first_of_component, component, np.concatenate(first_pixel))
    size = np.zeros(n_components, np.int64)
    np.add.at(size, component, np.concatenate(sizes))
    kept = size >= min_size_px
    kept[component[0]] = True  # the background
    rank = np.zeros(n_components, np.int64)  # dropped components: 0, the background
    ordered = np.argsort(first_of_component)
    ordered = ordered[kept[ordered]]
    rank[ordered] = np.arange(len(ordered))  # the background: 0
    final_ids = rank[component]
    final_ids[final_ids > 0] += first_id
    final_ids = final_ids.astype(np.uint32)
    for ys, xs in windows:
        offset, shape = chunk_region(z, ys, xs)
        blocks.write_block(target, offset, final_ids[blocks.read_block(target, offset, shape)])
    return len(ordered) - 1


def chunk_region(z: int, ys: slice, xs: slice) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(offset, shape) of slice z's window (ys, xs), as blocks.read_block and write_block take."""
    return (z, ys.start, xs.start), (1, ys.stop - ys.start, xs.stop - xs.start)


def first_pixels(ids: np.ndarray, found: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of the first pixel in raster order of each of ids 1 .. found: in the first row of
    its bounding box, the leftmost pixel of that id. Their rank in the slice is the same, as
    a chunk's raster order is the slice's among the chunk's pixels."""
    first_y = np.array([box[0].start for box in ndimage.find_objects(ids)], np.int64)
    first_row_of = np.concatenate([[-1], first_y])  # the background's: none
    in_first_row = first_row_of[ids] == np.arange(ids.shape[0])[:, np.newaxis]
    ys, xs = np.nonzero(in_first_row)
    first_x = np.full(found + 1, ids.shape[1])
    np.minimum.at(first_x, ids[ys, xs], xs)
    return first_y, first_x[1:]
