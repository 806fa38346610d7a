"""Data augmentation of the paper (§3.1): elastic deformation, shifts, rotations, flips, grey values.

A sample is drawn as one coordinate map into the slice; image (linear), labels (nearest) and
weights (linear) are all resampled through it, so they deform identically. Coordinates outside
the slice are mirrored into it (scipy's 'mirror' mode: the context that valid convolutions need at
the slice borders), and only the window they reach is read, so a slice may be a stored plane
read a window at a time (any object that gives a 2D array for [ys, xs]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentConfig:
    elastic: bool = True
    elastic_grid: int = 3  # paper: 3x3 coarse grid
    elastic_sigma_px: float = 10.0  # paper: 10 px standard deviation
    rotate: bool = True
    flip: bool = True
    grey_value: bool = True
    contrast_range: float = 0.2  # contrast factor drawn from 1 +- this
    brightness_range: float = 0.1  # offset drawn from +- this (grey values in [0, 1])


def cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys cubic-convolution weights of the 4 neighbours at fractional offset t (torch's bicubic)."""
    distances = np.stack([1 + t, t, 1 - t, 2 - t], axis=-1)
    near = (a + 2) * distances**3 - (a + 3) * distances**2 + 1
    far = a * distances**3 - 5 * a * distances**2 + 8 * a * distances - 4 * a
    return np.where(distances <= 1, near, far)


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix that upsamples a grid with bicubic interpolation, corners aligned."""
    position = np.arange(n_out) * (n_in - 1) / max(n_out - 1, 1)
    base = np.floor(position).astype(int)
    weights = cubic_weights(position - base)
    matrix = np.zeros((n_out, n_in))
    for k in range(4):
        np.add.at(matrix, (np.arange(n_out), np.clip(base - 1 + k, 0, n_in - 1)), weights[:, k])
    return matrix


def elastic_displacement(coarse: np.ndarray, size: int) -> np.ndarray:
    """(2, size, size) per-pixel displacements: a coarse grid of Gaussian vectors, bicubic upsampled."""
    upsample = bicubic_matrix(coarse.shape[-1], size)
    return np.einsum("ij,cjk,lk->cil", upsample, coarse, upsample)


@dataclass(frozen=True)
class Draw:
    """The random choices that make one sample, drawn in a fixed order so that a sample made
    from them on another device (augment_device.py) is the same sample."""

    center: tuple[float, float]
    flip: bool
    angle: float | None  # None: not rotated
    coarse: np.ndarray | None  # (2, grid, grid) elastic displacements; None: not deformed
    contrast: float | None  # None: no grey-value change
    brightness: float | None


def draw(rng: np.random.Generator, shape, config: AugmentConfig, center=None) -> Draw:
    """A sample's random choices: its centre (uniform in a slice of `shape`, unless given),
    mirror, rotation, elastic grid, then contrast and brightness."""
    if center is None:
        center = (rng.uniform(0, shape[0] - 1), rng.uniform(0, shape[1] - 1))
    flip = bool(config.flip and rng.random() < 0.5)
    angle = rng.uniform(0, 2 * np.pi) if config.rotate else None
    coarse = None
    if config.elastic:
        grid = config.elastic_grid
        coarse = rng.normal(0.0, config.elastic_sigma_px, (2, grid, grid))
    contrast = brightness = None
    if config.grey_value:
        contrast = rng.uniform(1 - config.contrast_range, 1 + config.contrast_range)
        brightness = rng.uniform(-config.brightness_range, config.brightness_range)
    return Draw(center, flip, angle, coarse, contrast, brightness)


def coordinates_of(choice: Draw, size: int) -> np.ndarray:
    """(2, size, size) source coordinates of the tile that `choice` transforms."""
    offsets = np.mgrid[:size, :size].astype(np.float64) - (size - 1) / 2
    if choice.flip:
        offsets[1] = -offsets[1]
    if choice.angle is not None:
        cos, sin = np.cos(choice.angle), np.sin(choice.angle)
        offsets = np.stack(
            [cos * offsets[0] - sin * offsets[1], sin * offsets[0] + cos * offsets[1]]
        )
    if choice.coarse is not None:
        offsets += elastic_displacement(choice.coarse, size)
    return offsets + np.asarray(choice.center, float)[:, None, None]


def sample_coordinates(
    rng: np.random.Generator, size: int, center: tuple[float, float], config: AugmentConfig
) -> np.ndarray:
    """(2, size, size) source coordinates of a randomly transformed tile centred at `center`
    (the grey-value draws follow, unused)."""
    return coordinates_of(draw(rng, None, config, center), size)


def crop_center(array: np.ndarray, size: int) -> np.ndarray:
    start = (array.shape[-1] - size) // 2
    return array[..., start : start + size, start : start + size]


def grey_value(image: np.ndarray, contrast: float, brightness: float) -> np.ndarray:
    mean = image.mean()
    return ((image - mean) * contrast + mean + brightness).astype(np.float32)


def mirrored(coordinates: np.ndarray, shape) -> np.ndarray:
    """(2, ...) coordinates folded into a plane of `shape` as scipy's 'mirror' mode folds them
    (reflected about the edge pixels, period 2 (n - 1)); exact, as the folds are."""
    folded = np.empty_like(coordinates)
    for axis, n in enumerate(shape):
        if n == 1:
            folded[axis] = 0.0
            continue
        period = 2 * (n - 1)
        within = np.abs(coordinates[axis]) % period
        folded[axis] = np.where(within > n - 1, period - within, within)
    return folded


def resampled(plane, coordinates: np.ndarray, order: int) -> np.ndarray:
    """plane at (2, ...) `coordinates` inside it, reading only the window that interpolation
    of `order` 0 or 1 reaches (shifting coordinates by whole pixels is exact)."""
    starts = [int(np.floor(axis.min())) for axis in coordinates]
    stops = [
        min(int(np.floor(axis.max())) + 2, n)
        for axis, n in zip(coordinates, plane.shape, strict=True)
    ]
    window = np.asarray(plane[tuple(map(slice, starts, stops))])
    relative = coordinates - np.array(starts, float).reshape(-1, *[1] * (coordinates.ndim - 1))
    return ndimage.map_coordinates(window, relative, order=order, mode="nearest")


def augmented_sample(
    rng: np.random.Generator,
    image,
    interior,
    weights,
    tile_in: int,
    tile_out: int,
    config: AugmentConfig,
    center: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training sample from one slice: (image tile_in², labels tile_out², weights tile_out²),
    centred at `center` (y, x), or at a uniformly drawn point of the slice. The slice's image,
    interior and weights are 2D arrays or planes read a window at a time."""
    choice = draw(rng, image.shape, config, center)
    coordinates = mirrored(coordinates_of(choice, tile_in), image.shape)
    tile = resampled(image, coordinates, order=1).astype(np.float32)
    inner = crop_center(coordinates, tile_out)
    target = resampled(interior, inner, order=0)
    weight = resampled(weights, inner, order=1).astype(np.float32)
    if choice.contrast is not None:
        tile = grey_value(tile, choice.contrast, choice.brightness)
    return tile, target.astype(np.int64), weight


# Sparse annotation: tile centres are drawn from the cells of this grid that hold annotated pixels.
ANNOTATION_GRID_PX = 16


# Rows of a plane scanned at once for annotation: a multiple of the grid.
SCAN_ROWS = 64 * ANNOTATION_GRID_PX


def annotated_cells(weights_2d) -> np.ndarray | None:
    """(n, 2) grid cells (ANNOTATION_GRID_PX a side) holding annotated pixels (weight > 0) of a
    sparsely annotated slice; None where every pixel is annotated. Read in bands of rows, so a
    stored plane is never held whole."""
    grid = ANNOTATION_GRID_PX
    height, width = weights_2d.shape
    found, everywhere = [], True
    for top in range(0, height, SCAN_ROWS):
        annotated = np.asarray(weights_2d[top : top + SCAN_ROWS, :]) > 0
        everywhere &= bool(annotated.all())
        rows, columns = (-(-n // grid) * grid for n in annotated.shape)
        padded = np.zeros((rows, columns), bool)
        padded[: annotated.shape[0], : annotated.shape[1]] = annotated
        cells = padded.reshape(rows // grid, grid, columns // grid, grid).any(axis=(1, 3))
        found.append(np.argwhere(cells) + [top // grid, 0])
    return None if everywhere else np.concatenate(found).astype(np.int32)


def annotated_point(rng: np.random.Generator, weights_2d: np.ndarray, cells: np.ndarray):
    """(y, x) of an annotated pixel: in a random grid cell of `cells`, a random annotated one."""
    top, left = (int(i) for i in cells[rng.integers(len(cells))] * ANNOTATION_GRID_PX)
    window = np.asarray(
        weights_2d[top : top + ANNOTATION_GRID_PX, left : left + ANNOTATION_GRID_PX]
    )
    y, x = np.divmod(rng.choice(np.flatnonzero(window > 0)), window.shape[1])
    return float(top + y), float(left + x)
