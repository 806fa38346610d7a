"""The paper's pixel-wise loss weights (§3, Eq. 2), computed slice by slice with Dask.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1, d2: distances to the nearest and second-nearest cell. The border term is applied to
background pixels only (the separation borders it is meant to emphasise). w_c balances the class
frequencies of the slice: w_c(x) = n_max / n_class(x), so the more frequent class weighs 1 and the
rarer one n_max / n_rare.
"""

from __future__ import annotations

import logging
import math
import os

import dask.array as da
import numpy as np
from scipy import ndimage

from unetseg import io, labels

log = logging.getLogger(__name__)

# Border-term contributions below this are dropped: it bounds the error against an exact map.
NEGLIGIBLE_WEIGHT = 1e-6


def class_balance(interior: np.ndarray) -> np.ndarray:
    """w_c per pixel: n_max / n_class, computed on this slice."""
    counts = np.array([np.count_nonzero(~interior), np.count_nonzero(interior)], float)
    present = counts > 0
    weight_per_class = np.ones(2)
    weight_per_class[present] = counts[present].max() / counts[present]
    return weight_per_class[interior.astype(int)]


def two_nearest_cell_distances(cell_ids: np.ndarray, max_distance_px: float):
    """(d1, d2) for every pixel, exact up to `max_distance_px` and inf beyond.

    Each cell's distance transform is computed only in its bounding box grown by the cut-off,
    instead of over the whole image: this is what makes the map fast on many-cell slices.
    """
    d1 = np.full(cell_ids.shape, np.inf)
    d2 = np.full(cell_ids.shape, np.inf)
    margin = math.ceil(max_distance_px) + 1
    for index, box in enumerate(ndimage.find_objects(cell_ids), start=1):
        if box is None:
            continue
        window = tuple(
            slice(max(s.start - margin, 0), min(s.stop + margin, size))
            for s, size in zip(box, cell_ids.shape, strict=True)
        )
        distance = ndimage.distance_transform_edt(cell_ids[window] != index)
        distance[distance > max_distance_px] = np.inf
        near1, near2 = d1[window], d2[window]
        near2[...] = np.minimum(near2, np.maximum(near1, distance))
        near1[...] = np.minimum(near1, distance)
    return d1, d2


def weight_map(cell_ids: np.ndarray, interior: np.ndarray, w0: float, sigma_px: float):
    """Eq. 2 for one slice; `cell_ids` labels the cells, `interior` is the foreground mask."""
    weights = class_balance(interior)
    if w0 <= 0:
        return weights.astype(np.float32)
    cut_off = sigma_px * math.sqrt(2 * math.log(w0 / NEGLIGIBLE_WEIGHT))
    d1, d2 = two_nearest_cell_distances(cell_ids, cut_off)
    with np.errstate(invalid="ignore"):
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma_px**2))
    border[~np.isfinite(d2)] = 0
    weights += np.where(interior, 0.0, border)
    return weights.astype(np.float32)


def weight_volume(label_volume: np.ndarray, kind: str, w0: float, sigma_px: float):
    """Weight maps of a (z, y, x) block of labels, slice by slice."""
    out = np.empty(label_volume.shape, np.float32)
    for z, slice_labels in enumerate(label_volume):
        out[z] = weight_map(
            labels.cells(slice_labels, kind), labels.interior(slice_labels, kind), w0, sigma_px
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
    kind = io.zarr_attrs(labels_path).get("label_kind") or labels.label_kind(source[:1])
    z_chunk = source.chunks[0]
    stack = da.from_zarr(source).rechunk((z_chunk, *source.shape[1:]))
    weights = stack.map_blocks(weight_volume, kind, w0, sigma_px, dtype=np.float32)
    with io.atomic_output(out_path) as tmp:
        target = io.create_ome_zarr(
            tmp,
            source.shape,
            np.float32,
            source.chunks,
            io.voxel_size(labels_path),
            attrs={"w0": w0, "sigma_px": sigma_px, "label_kind": kind},
        )
        da.store(weights, target, lock=False, scheduler="threads", num_workers=workers)
    log.info("wrote weight maps of %d slices to %s", source.shape[0], out_path)
