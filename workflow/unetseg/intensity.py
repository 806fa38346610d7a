"""Grey-value normalisation: how a volume's values become the network's input, (x - offset) / scale.

`unit` is the authors' release (im2double: integers divided by their type's maximum, floats as
they are); it suits 8-bit EM that fills its range. `percentile` maps a volume's low and high
percentiles to 0 and 1 (as CSBDeep and StarDist do), for data that use a part of their type's
range: 12-bit cameras in uint16, float32 in any range. `percentile_per_slice` maps each slice's
own percentiles, for stacks whose sections differ in brightness or contrast (serial sections
stained or imaged unevenly, a drifting detector); the 2D network sees each slice alone anyway.
The model records its method, so a volume is predicted as the training volumes were seen.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from unetseg.errors import UnetsegError

METHODS = ("unit", "percentile", "percentile_per_slice")
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILES = (1.0, 99.8)  # CSBDeep's
SAMPLE_PX = 2**22  # percentiles from at most this many pixels, taken from evenly spread chunks
SLICE_SAMPLE_PX = 2**20  # idem for one slice: a 10 000-slice stack reads 10 Gpx, not 40

Mapping = tuple[float, float]  # (offset, scale)


def unit_mapping(dtype: np.dtype) -> Mapping:
    """The release's im2double: integers divided by their type's maximum, floats as they are."""
    dtype = np.dtype(dtype)
    return 0.0, float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def volume_mapping(array, method: str, percentiles=DEFAULT_PERCENTILES) -> Mapping:
    """The (offset, scale) of a (z, y, x) volume (a Zarr array or numpy) under `method`, one
    for all its slices (`unit` or `percentile`)."""
    if method == "unit":
        return unit_mapping(array.dtype)
    if method not in METHODS:
        raise UnetsegError(f"train.normalize: '{method}' is not one of {', '.join(METHODS)}")
    if method != "percentile":
        raise ValueError(f"{method} gives a mapping per slice: call slice_mappings")
    return percentile_mapping(sampled_values(array), percentiles)


def slice_mappings(array, method: str, percentiles=DEFAULT_PERCENTILES) -> list[Mapping]:
    """The (offset, scale) of each slice of a (z, y, x) volume under `method`: the volume's own
    for every slice, or with `percentile_per_slice` each slice's percentiles."""
    if method != "percentile_per_slice":
        return [volume_mapping(array, method, percentiles)] * array.shape[0]
    return [
        percentile_mapping(sampled_values(array, SLICE_SAMPLE_PX, z), percentiles)
        for z in range(array.shape[0])
    ]


def percentile_mapping(values: np.ndarray, percentiles) -> Mapping:
    low, high = np.percentile(values, check_percentiles(percentiles))
    # A constant volume or slice (blank) maps to 0 instead of dividing by zero.
    return float(low), float(high - low) or 1.0


def check_percentiles(percentiles) -> tuple[float, float]:
    low, high = percentiles
    if not 0 <= low < high <= 100:
        raise UnetsegError(
            f"train.normalize_percentiles: [{low}, {high}] must be [low, high] "
            "with 0 <= low < high <= 100"
        )
    return low, high


def sampled_values(array, max_px: int = SAMPLE_PX, z: int | None = None) -> np.ndarray:
    """The volume's values (or slice z's), or those of evenly spread chunks (each thinned if one
    alone is over `max_px`) where it has more: percentiles in bounded memory whatever its size."""
    chunks = getattr(array, "chunks", None) or array.shape
    chunks = tuple(min(c, n) for c, n in zip(chunks, array.shape, strict=True))  # zarr allows more
    grid = [range(0, n, c) for n, c in zip(array.shape, chunks, strict=True)]
    if z is not None:  # the chunks' parts in slice z
        chunks, grid[0] = (1, *chunks[1:]), range(z, z + 1)
    origins = list(itertools.product(*grid))
    chunk_px = math.prod(chunks)
    count = max(1, min(len(origins), max_px // chunk_px))
    stride = math.ceil(count * chunk_px / max_px)
    # The centres of `count` equal strata of the chunks in raster order: distinct, spread out.
    picked = [origins[(2 * i + 1) * len(origins) // (2 * count)] for i in range(count)]
    return np.concatenate(
        [read_chunk(array, origin, chunks).ravel()[::stride] for origin in picked]
    )


def read_chunk(array, origin, chunks) -> np.ndarray:
    window = tuple(slice(o, o + c) for o, c in zip(origin, chunks, strict=True))
    return np.asarray(array[window])


def describe(mappings: list[Mapping], method: str) -> str:
    """The mappings for a log line: the one mapping, or the range of the slices' own."""
    offsets, scales = zip(*mappings, strict=True) if mappings else ((0.0,), (1.0,))
    if len(set(mappings)) <= 1:
        return f"(x - {offsets[0]:g}) / {scales[0]:g} ({method})"
    return (
        f"(x - offset) / scale per slice, offsets {min(offsets):g}-{max(offsets):g}, "
        f"scales {min(scales):g}-{max(scales):g} ({method})"
    )


def normalized(values: np.ndarray, mapping: Mapping) -> np.ndarray:
    """(values - offset) / scale as float32, the network's input."""
    offset, scale = mapping
    return (values.astype(np.float32) - np.float32(offset)) / np.float32(scale)
