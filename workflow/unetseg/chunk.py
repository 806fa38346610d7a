"""TIFF volumes into chunked, compressed OME-Zarr, streamed slab by slab with Dask.

Pages are read through tifffile's Zarr view of the file, so memory holds a few slabs at a time,
whatever the size of the volume; reading and writing overlap in Dask's thread pool.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import tifffile
import zarr

from unetseg import io, labels
from unetseg.errors import UnetsegError

log = logging.getLogger(__name__)

RAW_DTYPES = (np.uint8, np.uint16, np.float32)


def open_tiff(path: Path) -> tuple[zarr.Array, tuple[float, float, float] | None]:
    """A lazy (z, y, x) view of a TIFF and its voxel size from the metadata, if any."""
    if not path.exists():
        raise UnetsegError(f"{path}: no such file")
    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        array = zarr.open(series.aszarr(), mode="r")
    except Exception as error:
        raise UnetsegError(f"{path}: not a readable TIFF ({error})") from error
    if "S" in axes or len(shape) not in (2, 3):
        raise UnetsegError(
            f"{path}: expected a grey 2D image or 3D stack, got shape {shape} (axes {axes}); "
            "RGB and multichannel images are not supported"
        )
    if len(shape) == 2:
        array = da.from_zarr(array)[np.newaxis]
    return array, tiff_voxel_size(tif)


def tiff_voxel_size(tif: tifffile.TiffFile) -> tuple[float, float, float] | None:
    """(z, y, x) voxel size from ImageJ spacing and the resolution tags, if both are there."""
    metadata = tif.imagej_metadata or {}
    tags = tif.pages[0].tags
    if "XResolution" not in tags or "YResolution" not in tags or "spacing" not in metadata:
        return None
    x_num, x_den = tags["XResolution"].value
    y_num, y_den = tags["YResolution"].value
    return (float(metadata["spacing"]), y_den / y_num, x_den / x_num)


def select_slices(array, slices: tuple[int, int] | None, path: Path):
    if slices is None:
        return array
    start, stop = slices
    if not 0 <= start < stop <= array.shape[0]:
        raise UnetsegError(
            f"{path}: slice range [{start}, {stop}) is outside its {array.shape[0]} slices"
        )
    return array[start:stop]


def chunk_volume(
    tiff_path: str | os.PathLike,
    out_path: str | os.PathLike,
    chunks: tuple[int, int, int] = (1, 512, 512),
    slices: tuple[int, int] | None = None,
    voxel_size: tuple[float, float, float] | None = None,
    is_labels: bool = False,
    match_shape_of: str | os.PathLike | None = None,
    compression: dict | None = None,
    workers: int = 2,
) -> None:
    """Copy a TIFF (or a slice range of it) into an OME-Zarr store, validating as it streams."""
    path = Path(tiff_path)
    source, tiff_voxels = open_tiff(path)
    volume = select_slices(da.asarray(source), slices, path)
    check_shape_and_dtype(volume, path, is_labels)
    if match_shape_of is not None:
        reference, _ = open_tiff(Path(match_shape_of))
        expected = select_slices(da.asarray(reference), slices, Path(match_shape_of)).shape
        if volume.shape != expected:
            raise UnetsegError(
                f"{path}: labels shape {volume.shape} does not match raw {match_shape_of} "
                f"shape {expected}"
            )
    # Whole slices per task: tifffile serves a page at a time.
    volume = volume.rechunk((chunks[0], *volume.shape[1:]))
    checks = {"unique": da.unique(volume)} if is_labels else {}
    if volume.dtype.kind == "f":
        checks["finite"] = da.isfinite(volume).all()

    with io.atomic_output(out_path) as tmp:
        target = io.create_ome_zarr(
            tmp,
            volume.shape,
            volume.dtype,
            chunks,
            voxel_size or tiff_voxels or (1.0, 1.0, 1.0),
            compression=compression,
        )
        stored = da.store(volume, target, lock=False, compute=False)
        try:
            _, results = dask.compute(stored, checks, scheduler="threads", num_workers=workers)
        except (tifffile.TiffFileError, ValueError, OSError) as error:
            raise UnetsegError(f"{path}: corrupt or truncated TIFF ({error})") from error
        attrs = {"source": str(path), "slices": list(slices) if slices else None}
        if not results.get("finite", True):
            raise UnetsegError(f"{path}: raw contains NaN or Inf values")
        if is_labels:
            attrs["label_kind"] = labels_kind_from_values(results["unique"], volume.dtype, path)
        zarr.open_group(str(tmp), mode="r+").attrs.update({"unetseg": attrs})
    log.info("wrote %s %s %s to %s", volume.shape, volume.dtype, "labels" * is_labels, out_path)


def check_shape_and_dtype(volume, path: Path, is_labels: bool) -> None:
    if 0 in volume.shape:
        raise UnetsegError(f"{path}: empty volume (shape {volume.shape})")
    if is_labels:
        if volume.dtype.kind not in "ui":
            raise UnetsegError(f"{path}: labels must be integers, got {volume.dtype}")
    elif volume.dtype not in RAW_DTYPES:
        raise UnetsegError(
            f"{path}: raw dtype {volume.dtype} is not supported (uint8, uint16 or float32)"
        )


def labels_kind_from_values(unique: np.ndarray, dtype: np.dtype, path: Path) -> str:
    kind = labels.label_kind(unique.astype(dtype), name=str(path))
    if unique.max() == 0:
        raise UnetsegError(f"{path}: labels contain no cell (all zero); training cannot learn")
    return kind
