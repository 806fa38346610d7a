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

from unetseg import evaluate, io, labels
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
    (labels.label_slice_by_chunks), in bounded memory; the seeded watershed takes a whole slice."""
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
                count = labels.label_slice_by_chunks(
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
