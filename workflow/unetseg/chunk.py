"""TIFF volumes into chunked, compressed OME-Zarr, streamed slab by slab on a thread pool.

Each task reads one slab (TIFF pages straight from the file, or through tifffile's Zarr view),
checks it and writes its chunks, so memory holds a few slabs at a time whatever the size of the
volume; a slab of slices over BAND_BYTES (a large 2D plane: a montaged section, a whole slide)
is cut into bands of whole chunk rows, read from only the strips or tiles under them. Reading
and writing overlap across the pool's threads. The tasks are independent and run once each, so
a plain thread pool does what Dask's threaded scheduler would; `dask.compute` would import
dask.distributed to look for a client, and the two imports cost a chunk job 0.6 s
(`python -X importtime`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tifffile
import zarr

from unetseg import blocks, io, labels
from unetseg.errors import UnetsegError
from unetseg.progress import Counter, ProgressLog
from unetseg.stores import is_zarr

log = logging.getLogger(__name__)

RAW_DTYPES = (np.uint8, np.uint16, np.float32)
BAND_BYTES = 64 * 2**20  # the most one task reads at once, unless one row of chunks is more
ALL_ROWS = slice(None)


class Volume:
    """A lazy (z, y, x) volume: its shape and type, and slices (or rows of them) read on demand.
    Tasks get the volume, not its data, so each reads only its own slab."""

    def __init__(self, shape, dtype, read: Callable[[int, int, slice], np.ndarray]):
        """`read(start, stop, rows)` returns rows `rows` of slices [start, stop) as one array."""
        self.shape, self.dtype, self.read = tuple(shape), np.dtype(dtype), read

    def slices(self, start: int, stop: int) -> Volume:
        shape = (stop - start, *self.shape[1:])
        return Volume(shape, self.dtype, lambda a, b, rows: self.read(start + a, start + b, rows))


def open_tiff(
    path: Path, channel: int | None = None, is_labels: bool = False
) -> tuple[Volume, tuple[float, float, float] | None]:
    """A lazy view of a TIFF, a folder of 2D TIFF slices or a Zarr array, and its voxel size;
    of a multichannel TIFF (a C or S axis: ImageJ hyperstacks, OME-TIFF, RGB), its `channel`.
    (dask.array is not used here: importing it takes 0.7 s of every chunk job.)"""
    if not path.exists():
        raise UnetsegError(f"{path}: no such file")
    if path.is_dir() and channel is not None:
        raise UnetsegError(
            f"{path}: channel {channel} given, but a Zarr store or slice folder has no channels"
        )
    if path.is_dir() and is_zarr(path):
        array = io.open_zarr(path)
        volume = Volume(array.shape, array.dtype, lambda a, b, rows: array[a:b, rows])
        return volume, io.voxel_size(path)
    if path.is_dir():
        return open_slice_folder(path)
    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        array = zarr.open(series.aszarr(), mode="r")
    except Exception as error:
        raise UnetsegError(f"{path}: not a readable TIFF ({error})") from error
    picked = channel_picked(path, axes, shape, channel, is_labels)
    grey_shape = tuple(n for n, index in zip(shape, picked, strict=True) if index is None)
    if len(grey_shape) not in (2, 3):
        raise UnetsegError(
            f"{path}: expected a grey 2D image or 3D stack, got shape {shape} (axes {axes})"
        )
    depth_axis = picked.index(None) if len(grey_shape) == 3 else None
    y_axis = [axis for axis, kept in enumerate(picked) if kept is None][-2]

    def read(start: int, stop: int, rows: slice) -> np.ndarray:
        """Rows of slices [start, stop): only their pages (and channel) are read from the file,
        and of those only the strips or tiles under the rows."""
        index = tuple(
            slice(start, stop) if axis == depth_axis
            else rows if axis == y_axis
            else slice(None) if kept is None
            else kept
            for axis, kept in enumerate(picked)
        )  # fmt: skip
        slab = np.asarray(array[index])
        return slab if depth_axis is not None else slab[np.newaxis][start:stop]

    volume_shape = grey_shape if depth_axis is not None else (1, *grey_shape)
    return Volume(volume_shape, array.dtype, read), tiff_voxel_size(tif)


def channel_picked(
    path: Path, axes: str, shape, channel: int | None, is_labels: bool = False
) -> list[int | None]:
    """Per axis of the TIFF's series, the channel taken on its channel axis (C, or S for the
    samples of RGB); None on the axes that are kept."""
    channel_axes = [axis for axis, name in enumerate(axes) if name in "CS"]
    if len(channel_axes) > 1:
        raise UnetsegError(f"{path}: more than one channel axis (axes {axes}); not supported")
    if not channel_axes:
        if channel is not None:
            raise UnetsegError(
                f"{path}: channel {channel} given, but it has no channel axis (axes {axes})"
            )
        return [None] * len(shape)
    count = shape[channel_axes[0]]
    if channel is None:
        advice = (
            "labels must have one channel"
            if is_labels
            else f"set the volume's channel (0 to {count - 1}) to the one to segment"
        )
        if axes.startswith("S") and count in (3, 4):
            # tifffile.imwrite's (deprecated) default for a (3 or 4, y, x) array: a common way
            # to get here with a grey stack of 3 or 4 slices.
            advice += (
                f". If these are {count} slices: the file stores them as RGB planes, as "
                "tifffile.imwrite does for a (3 or 4, y, x) array unless given "
                "photometric='minisblack'; write it again with that"
            )
        raise UnetsegError(f"{path}: has {count} channels (axes {axes}); {advice}")
    if not 0 <= channel < count:
        raise UnetsegError(
            f"{path}: channel {channel} is outside its {count} channels (axes {axes})"
        )
    return [channel if axis == channel_axes[0] else None for axis in range(len(shape))]


def natural_key(path: Path) -> list:
    """'slice2' before 'slice10': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def open_slice_folder(folder: Path):
    """2D TIFF slices of one size, stacked in natural order (logged), read one slice per task."""
    files = sorted(
        (f for f in folder.iterdir() if f.suffix.lower() in (".tif", ".tiff")), key=natural_key
    )
    if not files:
        raise UnetsegError(f"{folder}: folder holds no .tif/.tiff slices")
    first, voxel_size = open_tiff(files[0])
    if first.shape[0] != 1:
        raise UnetsegError(f"{files[0]}: a slice folder must hold 2D images, got {first.shape}")
    for file in files[1:]:
        with tifffile.TiffFile(file) as tif:
            shape, dtype = tif.series[0].shape, tif.series[0].dtype
        if shape != first.shape[1:] or dtype != first.dtype:
            raise UnetsegError(
                f"{folder}: slice {file.name} is {shape} {dtype}, but {files[0].name} is "
                f"{first.shape[1:]} {first.dtype}; all slices must have one size and type"
            )
    log.info(
        "%s: %d slices in this order: %s", folder, len(files), ", ".join(f.name for f in files)
    )

    def read(start: int, stop: int, rows: slice) -> np.ndarray:
        return np.stack([read_slice(file, rows) for file in files[start:stop]])

    return Volume((len(files), *first.shape[1:]), first.dtype, read), voxel_size


def read_slice(path: Path, rows: slice = ALL_ROWS) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tif:
            return page_rows(tif.series[0].pages[0], rows)
    except Exception as error:
        raise UnetsegError(f"{path}: not a readable TIFF ({error})") from error


def page_rows(page: tifffile.TiffPage, rows: slice, out: np.ndarray | None = None) -> np.ndarray:
    """Rows of a 2D page, decoding only the strips or tiles under them; of uncompressed
    contiguous data (one strip, as ImageJ writes), only their bytes are read."""
    start, stop, _ = rows.indices(page.shape[0])
    if (start, stop) == (0, page.shape[0]):
        return page.asarray(out=out)
    if page.is_final and len(page.shape) == 2:
        row_bytes = page.shape[1] * page.dtype.itemsize
        handle = page.parent.filehandle
        handle.seek(page.dataoffsets[0] + start * row_bytes)
        stored = page.dtype.newbyteorder(page.parent.byteorder)
        data = np.frombuffer(handle.read((stop - start) * row_bytes), stored)
        band = data.reshape(stop - start, page.shape[1]).astype(page.dtype, copy=False)
    else:
        band = zarr.open(page.aszarr(), mode="r")[rows]
    if out is None:
        return band
    out[...] = band
    return out


def tiff_voxel_size(tif: tifffile.TiffFile) -> tuple[float, float, float] | None:
    """(z, y, x) voxel size from ImageJ spacing and the resolution tags, if both are there."""
    metadata = tif.imagej_metadata or {}
    tags = tif.pages[0].tags
    if "XResolution" not in tags or "YResolution" not in tags or "spacing" not in metadata:
        return None
    x_num, x_den = tags["XResolution"].value
    y_num, y_den = tags["YResolution"].value
    return (float(metadata["spacing"]), y_den / y_num, x_den / x_num)


def select_slices(volume: Volume, slices: tuple[int, int] | None, path: Path) -> Volume:
    if slices is None:
        return volume
    start, stop = slices
    if not 0 <= start < stop <= volume.shape[0]:
        raise UnetsegError(
            f"{path}: slice range [{start}, {stop}) is outside its {volume.shape[0]} slices"
        )
    return volume.slices(start, stop)


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
    shards: tuple[int, int, int] | None = None,
    levels: int = 1,
    label_kind: str = "auto",
    channel: int | None = None,
    match_channel: int | None = None,
    ignore_label: int | None = None,
) -> None:
    """Copy a TIFF, a slice folder, or a slice range of either into an OME-Zarr store, validating
    as it streams; optionally sharded, and with `levels` pyramid levels for viewers. Labels get
    their kind (`label_kind`, or detected for 'auto') and `ignore_label` (the value of unannotated
    pixels, if any) in the store's attributes. `channel` picks one channel of a multichannel TIFF;
    `match_channel` that of the `match_shape_of` TIFF."""
    path = Path(tiff_path)
    source, tiff_voxels = open_tiff(path, channel, is_labels)
    volume = select_slices(source, slices, path)
    check_shape_and_dtype(volume, path, is_labels)
    check_ignore_label(ignore_label, volume.dtype, path, is_labels)
    if match_shape_of is not None:
        reference, _ = open_tiff(Path(match_shape_of), match_channel)
        expected = select_slices(reference, slices, Path(match_shape_of)).shape
        if volume.shape != expected:
            raise UnetsegError(
                f"{path}: labels shape {volume.shape} does not match raw {match_shape_of} "
                f"shape {expected}"
            )
    slab = (shards or chunks)[0]  # whole shards per task when sharded: no two tasks share a file
    first_page = slices[0] if slices else 0
    # The page reader takes page z for slice z; a channel's pages are not those (or are whole).
    by_page = not path.is_dir() and channel is None
    pages = TiffPages.of(path, volume.shape[0], first_page) if by_page else None
    with (
        io.atomic_output(out_path) as tmp,
        io.bulk_writes(),
        pages or contextlib.nullcontext() as page_source,
    ):
        target = io.create_ome_zarr(
            tmp,
            volume.shape,
            volume.dtype,
            chunks,
            voxel_size or tiff_voxels or (1.0, 1.0, 1.0),
            compression=compression,
            shards=shards,
            levels=levels,
        )
        # One task reads, checks and writes one slab (or band of one): at most `workers` are in
        # memory.
        source = page_source or volume
        height = volume.shape[1]
        rows = band_rows(volume.shape, volume.dtype.itemsize, slab, (shards or chunks)[1])
        slabs = [
            (source, target, z, min(z + slab, volume.shape[0]), slice(y, min(y + rows, height)),
             is_labels)
            for z in range(0, volume.shape[0], slab)
            for y in range(0, height, rows)
        ]  # fmt: skip
        copied = Counter()

        def copy_and_count(*arguments):
            result = copy_slab(*arguments)
            copied.add()
            return result

        px_per_slab = int(np.prod(volume.shape)) / len(slabs)
        try:
            with ProgressLog(f"chunk {path.name}", "slabs", len(slabs), px_per_slab,
                             lambda: copied.value):  # fmt: skip
                checks = run_on_threads(copy_and_count, slabs, workers)
        except (tifffile.TiffFileError, ValueError, OSError) as error:
            if isinstance(error, OSError):
                io.raise_if_disk_full(error, Path(out_path))  # the output's, not the TIFF's
            raise UnetsegError(f"{path}: corrupt or truncated TIFF ({error})") from error
        attrs = {"source": str(path), "slices": list(slices) if slices else None}
        if channel is not None:
            attrs["channel"] = channel
        if not all(finite for finite, _ in checks):
            raise UnetsegError(f"{path}: raw contains NaN or Inf values")
        if is_labels:
            unique = np.unique(np.concatenate([values for _, values in checks]))
            attrs["label_kind"] = labels_kind_from_values(
                unique, volume.dtype, path, label_kind, ignore_label
            )
            attrs["ignore_label"] = ignore_label
        zarr.open_group(str(tmp), mode="r+").attrs.update({"unetseg": attrs})
        io.write_pyramid(tmp, levels, is_labels, workers)
    log.info("wrote %s %s %s to %s", volume.shape, volume.dtype, "labels" * is_labels, out_path)


class TiffPages:
    """Slabs read page by page from the file: 0.13 s against 0.52 s through tifffile's Zarr view
    for 256 MiB, measured by hand. Each thread opens its own handle, so reads never share a seek
    position."""

    def __init__(self, path: Path, first_page: int):
        self.path, self.first_page = path, first_page
        self.local, self.opened = threading.local(), []

    @classmethod
    def of(cls, path: Path, depth: int, first_page: int) -> TiffPages | None:
        """A page reader where each slice is one page of the first series, else None (then the
        general Zarr view reads the file)."""
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            total = series.shape[0] if len(series.shape) == 3 else 1
            one_page_per_slice = len(series.pages) == total and None not in series.pages
        return cls(path, first_page) if one_page_per_slice and depth <= total else None

    def read(self, start: int, stop: int, rows: slice) -> np.ndarray:
        if not hasattr(self.local, "tif"):
            self.local.tif = tifffile.TiffFile(self.path)
            self.opened.append(self.local.tif)
        pages = self.local.tif.series[0].pages
        first = pages[self.first_page + start]
        height = len(range(*rows.indices(first.shape[0])))
        slab = np.empty((stop - start, height, *first.shape[1:]), first.dtype)
        for z in range(start, stop):  # straight into the slab: no copy to stack pages
            page_rows(pages[self.first_page + z], rows, out=slab[z - start])
        return slab

    def __enter__(self) -> TiffPages:
        return self

    def __exit__(self, *exc) -> None:
        for tif in self.opened:
            tif.close()


def run_on_threads(function: Callable, calls: Iterable[tuple], workers: int) -> list:
    """[function(*arguments) for arguments in calls] on `workers` threads, in order. The first
    error cancels the calls not yet started and is raised."""
    with ThreadPoolExecutor(workers, thread_name_prefix="unetseg-chunk") as pool:
        futures = [pool.submit(function, *arguments) for arguments in calls]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def band_rows(shape, itemsize: int, depth: int, grid_rows: int) -> int:
    """Rows per task: whole slices while a slab of `depth` of them is at most BAND_BYTES, else
    the most whole rows of chunks (or shards), `grid_rows` high, that fit, at least one."""
    row_bytes = depth * shape[2] * itemsize
    if shape[1] * row_bytes <= BAND_BYTES:
        return shape[1]
    return max(1, BAND_BYTES // (row_bytes * grid_rows)) * grid_rows


def copy_slab(
    source: Volume | TiffPages,
    target: zarr.Array,
    start: int,
    stop: int,
    rows: slice,
    is_labels: bool,
):
    """Copy rows `rows` of slices [start, stop); return (all finite, the label values) for the
    checks."""
    block = source.read(start, stop, rows)
    finite = bool(np.isfinite(block).all()) if block.dtype.kind == "f" else True
    blocks.write_block(target, (start, rows.start, 0), block)
    return finite, np.unique(block) if is_labels else None


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


def check_ignore_label(ignore: int | None, dtype, path: Path, is_labels: bool) -> None:
    if ignore is None:
        return
    if not is_labels:
        raise UnetsegError(f"{path}: ignore_label is for labels, not raw images")
    if ignore <= 0 or ignore > np.iinfo(dtype).max:
        raise UnetsegError(
            f"{path}: ignore_label {ignore} must be between 1 and {np.iinfo(dtype).max} for "
            f"{dtype} labels (0 is background)"
        )


def labels_kind_from_values(
    unique: np.ndarray, dtype, path: Path, declared: str = "auto", ignore: int | None = None
) -> str:
    """The labels' kind, read from their values other than the ignore label."""
    if ignore is not None:
        if ignore not in unique:
            log.info("%s: no pixel has the ignore label %d: every pixel is annotated", path, ignore)
        unique = unique[unique != ignore]
        if unique.size == 0:
            raise UnetsegError(
                f"{path}: every pixel has the ignore label {ignore}: none is annotated"
            )
    kind = labels.declared_kind(unique.astype(dtype), declared, name=str(path))
    if unique.max() == 0:
        raise UnetsegError(f"{path}: labels contain no cell (all zero); training cannot learn")
    return kind
