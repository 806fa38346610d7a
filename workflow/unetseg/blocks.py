"""Chunk-aligned blocks written into Zarr arrays, as fast as the codec allows.

zarr-python hands each chunk of a write through its event loop and a thread pool, and writes it
to a temporary file that it renames into place. For whole chunks of a local store with the
default codecs (bytes, then Blosc), `write_block` instead encodes the chunks with the array's
own Blosc settings and writes each to the file zarr would have written: the same bytes, checked
against zarr in tests/test_blocks.py, 1.4-1.6x as fast (`python -m bench chunk`,
chunk_direct_vs_zarr). Every other layout (sharding, filters, other codecs or stores, unaligned
blocks) goes through zarr.

Writing a chunk file in place is safe here because every store is written under a temporary
name (`io.atomic_output`, or prediction's `.partial` store whose finished blocks are recorded
only after their chunks are written).
"""

from __future__ import annotations

import functools
import itertools
import os

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec
from zarr.storage import LocalStore

SHUFFLES = {"noshuffle": numcodecs.Blosc.NOSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE,
            "bitshuffle": numcodecs.Blosc.BITSHUFFLE}  # fmt: skip


def write_block(array: zarr.Array, offset: tuple[int, ...], block: np.ndarray) -> None:
    """array[offset : offset + block.shape] = block, for a block that starts on a chunk boundary
    and ends on one or at the array's edge (what the stages write)."""
    folder = chunk_folder(array)
    if folder is None or not is_chunk_aligned(array, offset, block.shape):
        array[tuple(slice(o, o + s) for o, s in zip(offset, block.shape, strict=True))] = block
        return
    codec = array.compressors[0]
    encoder = blosc_encoder(codec.cname.value, codec.clevel, codec.shuffle.value, codec.blocksize,
                            codec.typesize)  # fmt: skip
    dtype = array.dtype.newbyteorder("<")  # the bytes codec stores little-endian
    made = set()
    for index, part in whole_chunks(array, offset, block):
        path = os.path.join(folder, array.metadata.encode_chunk_key(index))
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        write_file(path, encoder.encode(np.ascontiguousarray(part, dtype=dtype)))


def write_file(path: str, data: bytes) -> None:
    """Path.write_bytes without its Python file object: one open, write and close per chunk."""
    file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:  # a regular file takes it all in one write, barring a signal or a full disk
            view = view[os.write(file, view) :]
    finally:
        os.close(file)


def whole_chunks(array: zarr.Array, offset, block: np.ndarray):
    """(chunk grid index, chunk-shaped part of the block) for each chunk the block covers; an edge
    chunk is stored whole, so its part is padded with the fill value."""
    first = [o // c for o, c in zip(offset, array.chunks, strict=True)]
    counts = [-(-s // c) for s, c in zip(block.shape, array.chunks, strict=True)]
    for steps in itertools.product(*map(range, counts)):
        part = block[
            tuple(slice(i * c, (i + 1) * c) for i, c in zip(steps, array.chunks, strict=True))
        ]
        if part.shape != array.chunks:
            whole = np.full(array.chunks, array.fill_value, dtype=array.dtype)
            whole[tuple(slice(0, s) for s in part.shape)] = part
            part = whole
        yield tuple(f + i for f, i in zip(first, steps, strict=True)), part


def chunk_folder(array: zarr.Array) -> str | None:
    """The folder of the array's chunk files, where chunks may be written directly; else None."""
    store = array.store_path.store
    plain_blosc = (
        array.metadata.zarr_format == 3
        and array.shards is None
        and not array.filters
        and isinstance(array.serializer, BytesCodec)
        and len(array.compressors) == 1
        and isinstance(array.compressors[0], BloscCodec)
    )
    if not plain_blosc or not isinstance(store, LocalStore) or store.read_only:
        return None
    return os.path.join(store.root, array.store_path.path)


def is_chunk_aligned(array: zarr.Array, offset, shape) -> bool:
    return all(
        o % c == 0 and (o + s == n or (o + s) % c == 0)
        for o, s, c, n in zip(offset, shape, array.chunks, array.shape, strict=True)
    )


@functools.lru_cache(maxsize=16)
def blosc_encoder(cname: str, clevel: int, shuffle: str, blocksize: int, typesize: int):
    """numcodecs' Blosc with a BloscCodec's settings, as zarr builds it."""
    return numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=SHUFFLES[shuffle],
                           blocksize=blocksize, typesize=typesize)  # fmt: skip
