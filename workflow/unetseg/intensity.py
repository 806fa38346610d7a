"""Grey-value normalisation: how a volume's values become the network's input, (x - offset) / scale.

`unit` is the authors' release (im2double: integers divided by their type's maximum, floats as
they are); it suits 8-bit EM that fills its range. `percentile` maps a volume's low and high
percentiles to 0 and 1 (as CSBDeep and StarDist do), for data that use a part of their type's
range: 12-bit cameras in uint16, float32 in any range. The model records its method, so a volume
is predicted as the training volumes were seen.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from unetseg.errors import UnetsegError

METHODS = ("unit", "percentile")
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILES = (1.0, 99.8)  # CSBDeep's
SAMPLE_PX = 2**22  # percentiles from at most this many pixels, taken from evenly spread chunks

Mapping = tuple[float, float]  # (offset, scale)


def unit_mapping(dtype: np.dtype) -> Mapping:
    """The release's im2double: integers divided by their type's maximum, floats as they are."""
    dtype = np.dtype(dtype)
    return 0.0, float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def volume_mapping(array, method: str, percentiles=DEFAULT_PERCENTILES) -> Mapping:
    """The (offset, scale) of a (z, y, x) volume (a Zarr array or numpy) under `method`."""
    if method == "unit":
        return unit_mapping(array.dtype)
    if method != "percentile":
        raise UnetsegError(f"train.normalize: '{method}' is not one of {', '.join(METHODS)}")
    low, high = np.percentile(sampled_values(array), check_percentiles(percentiles))
    # A constant volume (blank slices) maps to 0 instead of dividing by zero.
    return float(low), float(high - low) or 1.0


def check_percentiles(percentiles) -> tuple[float, float]:
    low, high = percentiles
    if not 0 <= low < high <= 100:
        raise UnetsegError(
            f"train.normalize_percentiles: [{low}, {high}] must be [low, high] "
            "with 0 <= low < high <= 100"
        )
    return low, high


def sampled_values(array, max_px: int = SAMPLE_PX) -> np.ndarray:
    """The volume's values, or those of evenly spread chunks (each thinned if one alone is over
    `max_px`) where the volume has more: percentiles in bounded memory whatever its size."""
    chunks = getattr(array, "chunks", None) or array.shape
    chunks = tuple(min(c, n) for c, n in zip(chunks, array.shape, strict=True))  # zarr allows more
    grid = [range(0, n, c) for n, c in zip(array.shape, chunks, strict=True)]
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


def normalized(values: np.ndarray, mapping: Mapping) -> np.ndarray:
    """(values - offset) / scale as float32, the network's input."""
    offset, scale = mapping
    return (values.astype(np.float32) - np.float32(offset)) / np.float32(scale)
