"""Synthetic EM-like demo volume with ground truth, so the whole chain runs without downloads.

Cells are a 3D Voronoi tessellation (so neighbouring slices are correlated like serial sections),
separated by dark membranes of varying thickness, with intracellular texture, small dark
organelles (labelled interior, as mitochondria are in ISBI 2012), blur and noise.
Labels follow ISBI 2012: uint8, 255 = cell interior, 0 = membrane.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

INTERIOR = 255


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to [0, 1]."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    field -= field.min()
    return field / max(field.max(), 1e-12)


def voronoi_cells(
    rng: np.random.Generator, shape: tuple[int, int, int], cell_diameter_px: float, z_step_px: float
) -> np.ndarray:
    """Label each voxel with its nearest random seed (anisotropic z spacing)."""
    extent = np.array([shape[0] * z_step_px, shape[1], shape[2]])
    n_seeds = max(2, int(np.prod(extent) / (0.5 * cell_diameter_px**3)))
    seeds = rng.uniform(0, 1, (n_seeds, 3)) * extent
    grid_index = np.floor(seeds / [z_step_px, 1, 1]).astype(int)
    grid_index = np.minimum(grid_index, np.array(shape) - 1)
    marker = np.ones(shape, bool)
    marker[tuple(grid_index.T)] = False
    _, nearest = ndimage.distance_transform_edt(
        marker, sampling=(z_step_px, 1, 1), return_indices=True
    )
    ids = np.zeros(shape, np.int32)
    ids[tuple(grid_index.T)] = np.arange(1, n_seeds + 1)
    return ids[tuple(nearest)]


def membranes(rng: np.random.Generator, cell_ids: np.ndarray, thickness_px: tuple[float, float]):
    """Per slice: pixels within a varying half-thickness of a boundary between two cells."""
    membrane = np.zeros(cell_ids.shape, bool)
    for z, ids in enumerate(cell_ids):
        boundary = np.zeros(ids.shape, bool)
        boundary[:-1] |= ids[:-1] != ids[1:]
        boundary[:, :-1] |= ids[:, :-1] != ids[:, 1:]
        distance = ndimage.distance_transform_edt(~boundary)
        low, high = thickness_px
        half_thickness = 0.5 * (low + (high - low) * smooth_noise(rng, ids.shape, 8))
        membrane[z] = distance <= half_thickness
    return membrane


def organelles(rng: np.random.Generator, membrane: np.ndarray, per_slice: int) -> np.ndarray:
    """Small dark ellipses inside cells, clear of the membranes."""
    dark = np.zeros(membrane.shape, bool)
    yy, xx = np.mgrid[: membrane.shape[1], : membrane.shape[2]]
    for z in range(membrane.shape[0]):
        clearance = ndimage.distance_transform_edt(~membrane[z])
        candidates = np.argwhere(clearance > 6)
        if len(candidates) == 0:
            continue
        for cy, cx in candidates[rng.choice(len(candidates), per_slice)]:
            ry, rx = rng.uniform(1.5, 3.5, 2)
            dark[z] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return dark & ~ndimage.binary_dilation(membrane, iterations=2)


def demo_volume(
    shape: tuple[int, int, int] = (8, 256, 256),
    seed: int = 0,
    cell_diameter_px: float = 40.0,
    membrane_px: tuple[float, float] = (2.0, 5.0),
    noise_std: float = 0.08,
    blur_px: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (raw uint8, labels uint8 with 255 = interior) of an EM-like volume."""
    rng = np.random.default_rng(seed)
    cell_ids = voronoi_cells(rng, shape, cell_diameter_px, z_step_px=cell_diameter_px / 4)
    membrane = membranes(rng, cell_ids, membrane_px)
    dark_spots = organelles(rng, membrane, per_slice=max(1, shape[1] * shape[2] // 4000))

    brightness = 0.7 + 0.15 * rng.uniform(-1, 1, cell_ids.max() + 1)[cell_ids]
    texture = np.stack([smooth_noise(rng, shape[1:], 2.0) for _ in range(shape[0])])
    image = brightness - 0.15 * texture
    image[dark_spots] = 0.35
    image[membrane] = 0.12 + 0.08 * texture[membrane]
    image = np.stack([ndimage.gaussian_filter(s, blur_px) for s in image])
    image += rng.normal(0, noise_std, shape)
    raw = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    labels = np.where(membrane, 0, INTERIOR).astype(np.uint8)
    return raw, labels
