"""Array I/O shared by the stages: OME-Zarr stores, TIFF reading, and atomic writes."""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import hashlib
import itertools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from unetseg.errors import UnetsegError

log = logging.getLogger(__name__)

OME_VERSION = "0.5"
ARRAY_NAME = "0"  # the full-resolution level of an OME-Zarr multiscale group


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    A killed or failing writer leaves at most a `.tmp-*` sibling (and `scratch_path`'s), never
    a `path` that a rerun would trust; the rerun removes them first.
    """
    final = Path(path)
    if not final.parent.exists():
        raise UnetsegError(f"{final.parent}: output folder does not exist")
    if not os.access(final.parent, os.W_OK):
        raise UnetsegError(f"{final.parent}: output folder is not writable")
    remove_leftovers(final)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if final.is_dir():  # a file is replaced in one step: the old one stays until then
            remove_path(final)
        os.replace(tmp, final)
    except OSError as error:
        # Root passes os.access; read-only or immutable folders still refuse the write.
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UnetsegError(
                f"{final.parent}: output folder is not writable ({error.strerror})"
            ) from error
        raise_if_disk_full(error, final)
        raise
    finally:
        remove_path(tmp)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def raise_if_disk_full(error: OSError, path: Path, note: str = "nothing was kept") -> None:
    """A full disk (or quota) as one line naming the output, what is left of it and the free
    space, instead of a traceback."""
    if error.errno in DISK_FULL:
        raise UnetsegError(
            f"{path}: no space left on the device ({error.strerror}; {free_mib(path.parent)} MiB "
            f"free there); {note}: free some space and rerun"
        ) from error


def free_mib(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free // 2**20
    except OSError:
        return 0


def remove_leftovers(final: Path) -> None:
    """Remove the temporary and scratch siblings of `final` that a killed writer left behind
    (a weights or segment store's can hold gigabytes). Only one writer makes a path at a time:
    Snakemake runs one job per output, and docs/cluster-and-gpus.md asks for one run per folder."""
    for kind in ("tmp", "scratch"):
        for stale in final.parent.glob(f".{glob.escape(final.name)}.{kind}-*"):
            log.info("removing %s, left by a writer that did not finish", stale)
            remove_path(stale)


@contextlib.contextmanager
def scratch_path(next_to: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden sibling path of `next_to` for intermediate data, removed afterwards."""
    path = Path(next_to).with_name(f".{Path(next_to).name}.scratch-{uuid.uuid4().hex[:8]}")
    try:
        yield path
    finally:
        remove_path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file, read in 1 MiB blocks; kept while the file's size and modification
    time stay the same (hashing the paper-size model takes 0.1 s, a GPU predicts 4 Mpx in it)."""
    status = os.stat(path)
    return _sha256(str(Path(path).resolve()), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: str | os.PathLike, data: object) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def blosc(cname: str = "zstd", clevel: int = 1) -> BloscCodec:
    """Byte shuffle and the lowest level: on the ISBI EM slices zstd 1 with byte shuffle encodes
    435 MiB/s on one thread at 1.083x, zstd 3 399 MiB/s at 1.080x (`python -m bench codecs`), and
    zstd 5 with bit shuffle was 7x slower at 1.06x (BENCHMARKS.md, chunk)."""
    return BloscCodec(cname=cname, clevel=clevel, shuffle="shuffle")


def bulk_writes() -> contextlib.AbstractContextManager:
    """zarr settings for writing whole chunks in bulk: encode up to 64 chunks of one write
    concurrently (zarr's default is one at a time), and skip the per-chunk test for an all-zero
    chunk (which costs more than compressing it; an empty chunk stays small compressed).
    Measured by hand on one 4096² uint8 page (64 chunks): 0.37-0.54 s against 0.81-0.85 s.
    zarr takes the empty-chunk setting when an array is opened: open the array inside."""
    return zarr.config.set({"codec_pipeline.batch_size": 64, "array.write_empty_chunks": True})


def create_ome_zarr(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    dtype: np.dtype | str,
    chunks: tuple[int, ...],
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    attrs: dict | None = None,
    compression: dict | None = None,
    fill_value: float | int = 0,
    shards: tuple[int, ...] | None = None,
    levels: int = 1,
    quantise_to_uint8: bool = False,
    checksums: bool = True,
) -> zarr.Array:
    """Create a Zarr v3 group with OME-NGFF 0.5 metadata (axes z, y, x) and return its array.

    `shards` groups chunks into shard files (Zarr v3 sharding); `levels` > 1 declares a pyramid of
    arrays "1", "2", ... each halved in y and x (see `write_pyramid`), for viewers such as napari.
    `quantise_to_uint8` stores values in [0, 1] as round(255 v) bytes that read back as float32
    (numcodecs' fixed-scale-offset filter): a quarter of the size, within 1/510. Each chunk ends
    in its crc32c unless `checksums` is off (BENCHMARKS.md, writers: its cost).
    """
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    multiscale = {
        "name": store_name(path),
        "axes": [{"name": axis, "type": "space", "unit": "micrometer"} for axis in "zyx"],
        "datasets": [
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": level_scale(voxel_size, level)}
                ],
            }
            for level in range(levels)
        ],
    }
    group.attrs.update({"ome": {"version": OME_VERSION, "multiscales": [multiscale]}})
    if attrs:
        group.attrs.update({"unetseg": attrs})
    chunks = tuple(min(c, s) for c, s in zip(chunks, shape, strict=True))
    if shards is not None:  # a shard holds whole chunks and is at least one chunk
        shards = tuple(max(c, s // c * c) for c, s in zip(chunks, shards, strict=True))
    return group.create_array(
        ARRAY_NAME,
        shape=shape,
        chunks=chunks,
        shards=shards,
        dtype=np.float32 if quantise_to_uint8 else dtype,
        filters=[uint8_quantiser()] if quantise_to_uint8 else None,
        # each chunk ends in its crc32c: a damaged chunk is found on read, not used
        compressors=[blosc(**(compression or {})), *([Crc32cCodec()] if checksums else [])],
        fill_value=fill_value,
    )


def damaged_chunks(path: str | os.PathLike) -> list[str]:
    """The chunks of a store whose crc32c does not match, found by reading each chunk once
    (after a read failed: zarr's error names neither the store nor the chunk)."""
    damaged = []
    array = open_zarr(path)
    grid = [range(-(-n // c)) for n, c in zip(array.shape, array.chunks, strict=True)]
    for index in itertools.product(*grid):
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, array.chunks, strict=True))
        try:
            array[region]
        except ValueError as error:  # zarr's crc32c codec: "... checksum do not match"
            if "checksum" not in str(error).lower():
                raise
            damaged.append("/".join(map(str, index)))
    return damaged


def uint8_quantiser():
    import warnings

    from zarr.codecs.numcodecs import FixedScaleOffset

    with warnings.catch_warnings():  # "not in the Zarr v3 spec": true, and zarr-python reads it
        warnings.simplefilter("ignore")
        return FixedScaleOffset(offset=0, scale=255, dtype="<f4", astype="u1")


def level_scale(voxel_size, level: int) -> list[float]:
    return [float(voxel_size[0]), *(float(v) * 2**level for v in voxel_size[1:])]


def write_pyramid(path: str | os.PathLike, levels: int, is_labels: bool, workers: int = 2) -> None:
    """Arrays "1" .. levels-1 of an OME-Zarr group, each half the previous in y and x: the mean of
    2 x 2 pixels for grey values, the top-left pixel for labels (ids must not blend)."""
    if levels <= 1:
        return
    import dask.array as da  # here: importing it takes 0.7 s, which a chunk job need not pay

    group = zarr.open_group(str(path), mode="r+")
    full = group[ARRAY_NAME]
    for level in range(1, levels):
        previous = da.from_zarr(group[str(level - 1)])
        factors = {axis: 2 if previous.shape[axis] >= 2 else 1 for axis in (1, 2)}
        even = previous[:, : previous.shape[1] // factors[1] * factors[1],
                        : previous.shape[2] // factors[2] * factors[2]]  # fmt: skip
        if is_labels:
            smaller = even[:, :: factors[1], :: factors[2]]
        else:
            smaller = da.coarsen(np.mean, even, factors).astype(previous.dtype)
        target = group.create_array(
            str(level),
            shape=smaller.shape,
            chunks=tuple(min(c, s) for c, s in zip(full.chunks, smaller.shape, strict=True)),
            dtype=previous.dtype,
            compressors=full.compressors,
            fill_value=0,
        )
        da.store(smaller.rechunk(target.chunks), target, lock=False, scheduler="threads",
                 num_workers=workers)  # fmt: skip


def store_name(path: str | os.PathLike) -> str:
    """'raw' for 'raw.zarr' and its temporary siblings '.raw.zarr.tmp-1a2b3c4d', 'raw.zarr.partial'."""
    return (
        Path(path).name.split(".tmp-")[0].lstrip(".").removesuffix(".partial").removesuffix(".zarr")
    )


def open_node(path: str | os.PathLike, mode: str = "r") -> zarr.Array | zarr.Group:
    """The Zarr group or array at `path`, or one line saying why it cannot be opened."""
    path = Path(path)
    if not path.exists():
        raise UnetsegError(f"{path}: no such Zarr store")
    try:
        return zarr.open(str(path), mode=mode)
    except Exception as error:  # zarr raises several types for a broken store
        raise UnetsegError(f"{path}: not a readable Zarr store ({error})") from error


def open_zarr(path: str | os.PathLike, mode: str = "r") -> zarr.Array:
    """Open the full-resolution array of an OME-Zarr group, or a bare Zarr array."""
    node = open_node(path, mode)
    if isinstance(node, zarr.Group):
        datasets = multiscale(node).get("datasets") or [{"path": ARRAY_NAME}]
        full_resolution = datasets[0]["path"]
        if full_resolution not in node:
            raise UnetsegError(f"{path}: Zarr group has no array '{full_resolution}'")
        node = node[full_resolution]
    return node


def multiscale(group: zarr.Group) -> dict:
    """The first OME-NGFF multiscale of a group: 0.5 keeps it under 'ome', 0.4 at the top."""
    attrs = group.attrs.asdict()
    scales = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales") or [{}]
    return scales[0]


def zarr_attrs(path: str | os.PathLike) -> dict:
    """The unetseg attributes recorded in an OME-Zarr group (empty for a bare array)."""
    node = zarr.open(str(path), mode="r")
    return dict(node.attrs.get("unetseg", {})) if isinstance(node, zarr.Group) else {}


def voxel_size(path: str | os.PathLike) -> tuple[float, float, float]:
    node = zarr.open(str(path), mode="r")
    try:
        transforms = multiscale(node)["datasets"][0]["coordinateTransformations"]
        scale = next(t["scale"] for t in transforms if t["type"] == "scale")
        return tuple(float(v) for v in scale[-3:])
    except (AttributeError, KeyError, IndexError, TypeError, StopIteration):
        return (1.0, 1.0, 1.0)


class Slices:
    """A (z, y, x) volume read one slice at a time: `volume[z]` is a 2D NumPy array."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: np.dtype, read_slice):
        if len(shape) not in (2, 3):
            raise UnetsegError(f"{name}: a {len(shape)}D image; expected (y, x) or (z, y, x)")
        self.name, self.dtype, self._read_slice = name, np.dtype(dtype), read_slice
        self.shape = tuple(shape) if len(shape) == 3 else (1, *shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, z: int) -> np.ndarray:
        return np.asarray(self._read_slice(z))


def open_slices(path: str | os.PathLike) -> Slices:
    """A TIFF or Zarr volume, read a slice at a time (a 2D image is one slice). A TIFF that
    stores several slices in one page (planar samples) is read whole, once, when first asked."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        array = open_zarr(path)
        return Slices(str(path), array.shape, array.dtype, array.__getitem__ if array.ndim == 3
                      else lambda z: array[...])  # fmt: skip
    import tifffile

    if not path.exists():
        raise UnetsegError(f"{path}: no such file")
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            shape, dtype, axes, pages = series.shape, series.dtype, series.axes, len(series.pages)
    except Exception as error:
        raise UnetsegError(f"{path}: not a readable TIFF ({error})") from error
    if axes.endswith("S"):
        raise UnetsegError(
            f"{path}: {shape[-1]} samples per pixel (axes {axes}, RGB?); expected grey values"
        )
    if len(shape) == 3 and pages == shape[0]:
        return Slices(str(path), shape, dtype, lambda z: tifffile.imread(path, key=z, series=0))
    whole = functools.cache(lambda: tifffile.imread(path))
    return Slices(str(path), shape, dtype, lambda z: whole()[z] if len(shape) == 3 else whole())
