"""Zarr -> TIFF for Fiji users, streamed slice by slice (BigTIFF past 4 GB, ImageJ metadata);
slices over TILED_SLICE_BYTES (large 2D planes) as tiles, a few at a time. Every file carries
its voxel size in micrometres; label images whose ids fit in uint16 are written as uint16, which
ImageJ opens as integer labels (it has no uint32 and would show those as 32-bit float)."""

from __future__ import annotations

import logging
import os

import numpy as np
import tifffile

from unetseg import io

log = logging.getLogger(__name__)

IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
BIGTIFF_BYTES = 2**32 - 2**25  # leave room for the tags
TILED_SLICE_BYTES = 64 * 2**20
TILE_PX = 512
TILES_PER_READ = 8  # tiles read from the store at once (zarr's cost per read is amortised)


def export_tiff(zarr_path: str | os.PathLike, tiff_path: str | os.PathLike) -> None:
    array = io.open_zarr(zarr_path)
    dtype = export_dtype(array)
    slice_bytes = int(np.prod(array.shape[1:])) * np.dtype(dtype).itemsize
    tile = (TILE_PX, TILE_PX) if slice_bytes > TILED_SLICE_BYTES else None
    # ImageJ's own TIFF reader takes no tiles (Fiji opens tiled files through Bio-Formats).
    imagej = dtype in IMAGEJ_DTYPES and tile is None
    z_um, y_um, x_um = io.voxel_size(zarr_path)
    nbytes = array.shape[0] * slice_bytes
    with (
        io.atomic_output(tiff_path) as tmp,
        tifffile.TiffWriter(tmp, bigtiff=nbytes > BIGTIFF_BYTES, imagej=imagej) as tif,
    ):
        tif.write(
            tiles(array, dtype, TILE_PX) if tile else slices(array, dtype),
            shape=array.shape,
            dtype=dtype,
            tile=tile,
            # ImageJ reads pixels per `unit` from its description; other readers (Bio-Formats,
            # QuPath) the TIFF resolution unit, which has no micrometre: pixels per centimetre.
            resolution=(1 / x_um, 1 / y_um) if imagej else (1e4 / x_um, 1e4 / y_um),
            resolutionunit=None if imagej else tifffile.RESUNIT.CENTIMETER,
            metadata={"axes": "ZYX", "spacing": z_um, "unit": "um"} if imagej else None,
        )
    log.info("exported %s %s to %s%s", array.shape, np.dtype(dtype), tiff_path,
             f" in {TILE_PX}-px tiles" if tile else "")  # fmt: skip


def export_dtype(array) -> np.dtype:
    """float16 as float32 (ImageJ has no float16); integer labels in the narrowest of uint16 and
    their own type that holds every id (one pass over the store, cheap next to the export)."""
    if array.dtype == np.float16:
        return np.dtype(np.float32)
    if array.dtype.kind in "iu" and array.dtype.itemsize > 2:
        lowest, highest = value_range(array)
        if lowest >= 0 and highest <= np.iinfo(np.uint16).max:
            return np.dtype(np.uint16)
    return array.dtype


def value_range(array) -> tuple[int, int]:
    """(min, max) of an integer store, read in bands of TILE_PX rows (bounded memory however
    large a slice)."""
    bands = (np.asarray(array[z, y : y + TILE_PX])
             for z in range(array.shape[0]) for y in range(0, array.shape[1], TILE_PX))  # fmt: skip
    ranges = [(int(band.min()), int(band.max())) for band in bands]
    return min(low for low, _ in ranges), max(high for _, high in ranges)


def slices(array, dtype):
    for z in range(array.shape[0]):
        yield np.asarray(array[z], dtype=dtype)


def tiles(array, dtype, tile_px: int):
    """The tiles of each slice in TIFF order (row by row), read TILES_PER_READ at a time: memory
    for that many, however wide the slice."""
    width = tile_px * TILES_PER_READ
    for z in range(array.shape[0]):
        for y in range(0, array.shape[1], tile_px):
            for x0 in range(0, array.shape[2], width):
                window = np.asarray(array[z, y : y + tile_px, x0 : x0 + width], dtype=dtype)
                for x in range(0, window.shape[1], tile_px):
                    yield window[:, x : x + tile_px]
