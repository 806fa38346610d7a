"""Zarr -> TIFF for Fiji users, streamed slice by slice (BigTIFF past 4 GB, ImageJ metadata)."""

from __future__ import annotations

import logging
import os

import numpy as np
import tifffile

from unetseg import io

log = logging.getLogger(__name__)

IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
BIGTIFF_BYTES = 2**32 - 2**25  # leave room for the tags


def export_tiff(zarr_path: str | os.PathLike, tiff_path: str | os.PathLike) -> None:
    array = io.open_zarr(zarr_path)
    dtype = np.float32 if array.dtype == np.float16 else array.dtype
    imagej = dtype in IMAGEJ_DTYPES
    z_um, y_um, x_um = io.voxel_size(zarr_path)

    def slices():
        for z in range(array.shape[0]):
            yield np.asarray(array[z], dtype=dtype)

    nbytes = int(np.prod(array.shape)) * np.dtype(dtype).itemsize
    with (
        io.atomic_output(tiff_path) as tmp,
        tifffile.TiffWriter(tmp, bigtiff=nbytes > BIGTIFF_BYTES, imagej=imagej) as tif,
    ):
        tif.write(
            slices(),
            shape=array.shape,
            dtype=dtype,
            resolution=(1 / x_um, 1 / y_um),
            metadata={"axes": "ZYX", "spacing": z_um, "unit": "um"} if imagej else None,
        )
    log.info("exported %s %s to %s", array.shape, np.dtype(dtype), tiff_path)
