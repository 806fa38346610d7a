"""The paper's augmentation (augment.py) computed on the training device: loader processes draw a
sample's random choices and read the window of its slice that the sample reaches; the device
builds the coordinate map (mirror, rotation, elastic deformation), resamples image, labels and
weights through it and changes the grey values. The same choices give the CPU path's sample:
image and weights within 1e-5, labels exactly (tests/test_augment_device.py), so a run may
switch paths (`train.augment_device`) without changing what it learns from.

Coordinates are float64 on every device, as scipy computes them: in float32 a 572-px tile's
coordinates carry 6e-5 px of rounding, which interpolation passes on to the grey values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from unetseg.augment import Draw, bicubic_matrix, crop_center, cubic_weights

# The largest sum of |bicubic weights| over a row of the upsampling (about 1.375, at t = 0.5).
CUBIC_ROW_SUM = float(np.abs(cubic_weights(np.linspace(0, 1, 65))).sum(axis=-1).max())


@dataclass
class Window:
    """What a loader process sends for one sample: the window of its slice that the sample
    reaches (normalised image, interior mask, weights), where it lies, and the choices."""

    image: np.ndarray  # float32 (h, w)
    interior: np.ndarray  # uint8 (h, w)
    weights: np.ndarray  # float32 (h, w)
    origin: tuple[int, int]  # the window's first pixel in the slice
    shape: tuple[int, int]  # the slice's
    choice: Draw


def reach(choice: Draw, size: int) -> list[tuple[float, float]]:
    """Per axis, bounds of the coordinates of a `size`-px tile before mirroring: the turned
    square's extent plus the largest elastic displacement (bicubic weights sum to at most
    max_row_sum(|weights|) per axis, so no displacement exceeds that squared times the largest
    grid value)."""
    half = (size - 1) / 2
    if choice.angle is None:
        extent = half
    else:
        extent = half * (abs(math.cos(choice.angle)) + abs(math.sin(choice.angle)))
    if choice.coarse is not None:
        extent += CUBIC_ROW_SUM**2 * float(np.abs(choice.coarse).max()) + 1e-6
    return [(c - extent, c + extent) for c in choice.center]


def folded_span(low: float, high: float, n: int) -> tuple[int, int]:
    """The pixels [start, stop) that interpolation reads for coordinates in [low, high] once
    mirrored into [0, n - 1] (augment.mirrored's folds)."""
    if n == 1:
        return 0, 1
    if high - low >= n - 1:
        return 0, n
    period = 2 * (n - 1)

    def fold(x: float) -> float:
        within = abs(x) % period
        return period - within if within > n - 1 else within

    values = [fold(low), fold(high)]  # and each fold point inside: its image is 0 or n - 1
    values += [
        fold(k * (n - 1)) for k in range(math.ceil(low / (n - 1)), math.floor(high / (n - 1)) + 1)
    ]
    return int(math.floor(min(values))), min(int(math.floor(max(values))) + 2, n)


def window_of(choice: Draw, size: int, shape) -> tuple[slice, slice]:
    """The window of a slice of `shape` that a `size`-px sample reaches."""
    spans = [
        folded_span(low, high, n) for (low, high), n in zip(reach(choice, size), shape, strict=True)
    ]
    return tuple(slice(start, stop) for start, stop in spans)


def read_window(choice: Draw, size: int, image, interior, weights) -> Window:
    """The loader's part: the window of each plane (2D arrays or planes read a window at a time)."""
    ys, xs = window_of(choice, size, image.shape)
    return Window(
        np.asarray(image[ys, xs], np.float32),
        np.asarray(interior[ys, xs], np.uint8),
        np.asarray(weights[ys, xs], np.float32),
        (ys.start, xs.start),
        tuple(image.shape),
        choice,
    )


def coordinates_on(choice: Draw, size: int, device: torch.device) -> torch.Tensor:
    """augment.coordinates_of on `device`, float64."""
    grid = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    offset_y, offset_x = torch.meshgrid(grid, grid, indexing="ij")
    if choice.flip:
        offset_x = -offset_x
    if choice.angle is not None:
        cos, sin = math.cos(choice.angle), math.sin(choice.angle)
        offset_y, offset_x = cos * offset_y - sin * offset_x, sin * offset_y + cos * offset_x
    offsets = torch.stack([offset_y, offset_x])
    if choice.coarse is not None:
        upsample = torch.from_numpy(bicubic_matrix(choice.coarse.shape[-1], size)).to(device)
        coarse = torch.from_numpy(choice.coarse).to(device)
        offsets = offsets + torch.einsum("ij,cjk,lk->cil", upsample, coarse, upsample)
    center = torch.tensor(choice.center, dtype=torch.float64, device=device)
    return offsets + center[:, None, None]


def mirrored(coordinates: torch.Tensor, shape) -> torch.Tensor:
    """augment.mirrored on `device`."""
    folded = []
    for axis, n in enumerate(shape):
        if n == 1:
            folded.append(torch.zeros_like(coordinates[axis]))
            continue
        period = 2 * (n - 1)
        within = torch.remainder(coordinates[axis].abs(), period)
        folded.append(torch.where(within > n - 1, period - within, within))
    return torch.stack(folded)


def interpolated(window: torch.Tensor, coordinates: torch.Tensor, order: int) -> torch.Tensor:
    """scipy.ndimage.map_coordinates(window, coordinates, order, mode='nearest') for order 0
    (the nearest pixel, half up) and 1 (bilinear), in float64."""
    height, width = window.shape
    y, x = coordinates[0], coordinates[1]
    if order == 0:
        rows = torch.floor(y + 0.5).long().clamp(0, height - 1)
        columns = torch.floor(x + 0.5).long().clamp(0, width - 1)
        return window[rows, columns]
    y0, x0 = torch.floor(y), torch.floor(x)
    fy, fx = y - y0, x - x0
    y0, x0 = y0.long(), x0.long()
    y1, x1 = (y0 + 1).clamp(0, height - 1), (x0 + 1).clamp(0, width - 1)
    y0, x0 = y0.clamp(0, height - 1), x0.clamp(0, width - 1)
    values = window.double()
    top = values[y0, x0] * (1 - fx) + values[y0, x1] * fx
    bottom = values[y1, x0] * (1 - fx) + values[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def augmented_on(
    window: Window, tile_in: int, tile_out: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sample on `device` from its window: (image 1 x tile_in², labels, weights tile_out²)."""
    choice = window.choice
    coordinates = mirrored(coordinates_on(choice, tile_in, device), window.shape)
    origin = torch.tensor(window.origin, dtype=torch.float64, device=device)
    coordinates = coordinates - origin[:, None, None]
    planes = [
        torch.from_numpy(a).to(device, non_blocking=True)
        for a in (window.image, window.interior, window.weights)
    ]
    tile = interpolated(planes[0], coordinates, order=1).float()
    inner = crop_center(coordinates, tile_out)
    target = interpolated(planes[1], inner, order=0).long()
    weight = interpolated(planes[2], inner, order=1).float()
    if choice.contrast is not None:
        mean = tile.mean()
        tile = (tile - mean) * choice.contrast + mean + choice.brightness
    return tile[None], target, weight


def augmented_batch(windows: list[Window], tile_in: int, tile_out: int, device: torch.device):
    """A batch of samples made on `device`: (images N x 1 x tile_in², labels, weights)."""
    samples = [augmented_on(window, tile_in, tile_out, device) for window in windows]
    return tuple(torch.stack(parts) for parts in zip(*samples, strict=True))
