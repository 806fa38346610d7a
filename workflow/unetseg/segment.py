"""Probability of cell interior -> cell instances: threshold, then 4-connected components per slice."""

from __future__ import annotations

import logging
import os

import numpy as np
from scipy import ndimage

from unetseg import io
from unetseg.labels import FOUR_CONNECTED

log = logging.getLogger(__name__)


def segment_slice(probability: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """(uint32 instance ids, count) of one slice: components of probability > threshold."""
    interior = probability.astype(np.float32).astype(np.float64) > threshold
    ids, count = ndimage.label(interior, structure=FOUR_CONNECTED, output=np.uint32)
    return ids, count


def segment_volume(
    probability_path: str | os.PathLike, out_path: str | os.PathLike, threshold: float = 0.5
) -> int:
    """Segment every slice into an OME-Zarr of uint32 ids, unique across the volume."""
    probability = io.open_zarr(probability_path)
    next_id = 0
    with io.atomic_output(out_path) as tmp:
        target = io.create_ome_zarr(
            tmp,
            probability.shape,
            np.uint32,
            (1, *probability.chunks[1:]),
            io.voxel_size(probability_path),
            attrs={"threshold": threshold, "label_kind": "instance", "connectivity": 4},
        )
        for z in range(probability.shape[0]):
            ids, count = segment_slice(probability[z], threshold)
            ids[ids > 0] += next_id
            target[z] = ids
            next_id += count
    log.info("segmented %d cells in %d slices into %s", next_id, probability.shape[0], out_path)
    return next_id
