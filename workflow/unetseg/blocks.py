"""Blocks written into and read from Zarr arrays, as fast as the codec allows.

Writing goes through zarr-python with the `zarrs` codec pipeline (a maintained, parallel Rust
pipeline, switched on in `unetseg.io`): it writes chunks and shards as fast as the hand-written
encoder this module had, or faster (1.07-1.12x on chunking, sharded chunking and prediction's
writes; `python -m bench writers`, BENCHMARKS.md), so that encoder is gone. `read_block` reads
any region of a local store of plain Blosc chunks (optionally in shards) straight from the chunk
files, decoded into the region, with a cache of decoded chunks shared by the threads of a
process: prediction and training read overlapping windows, and per chunk zarr's event loop
costs more than decoding it. Every other layout goes through zarr.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.storage import LocalStore

from unetseg.errors import UnetsegError

SHUFFLES = {"noshuffle": numcodecs.Blosc.NOSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE,
            "bitshuffle": numcodecs.Blosc.BITSHUFFLE}  # fmt: skip
NO_CHUNK = 2**64 - 1  # a shard index entry (offset and length) for a chunk not stored


def chunk_windows(shape_yx, chunks_yx):
    """(y slice, x slice) of every chunk of a slice, row by row (the edge ones cut to the
    slice): the regions that the stages write and read whole."""
    for y in range(0, shape_yx[0], chunks_yx[0]):
        for x in range(0, shape_yx[1], chunks_yx[1]):
            yield (
                slice(y, min(y + chunks_yx[0], shape_yx[0])),
                slice(x, min(x + chunks_yx[1], shape_yx[1])),
            )


def write_block(array: zarr.Array, offset: tuple[int, ...], block: np.ndarray) -> None:
    """array[offset : offset + block.shape] = block (the stages write whole chunks or shards)."""
    array[tuple(slice(o, o + s) for o, s in zip(offset, block.shape, strict=True))] = block


def read_block(
    array, offset: tuple[int, ...], shape: tuple[int, ...], cache: DecodedChunks | None = None
) -> np.ndarray:
    """array[offset : offset + shape], decoded straight from the chunk (or shard) files of a Zarr
    array that `write_block` would write directly; other arrays (any other Zarr layout, numpy)
    are sliced. Prediction reads its input this way: per chunk, zarr's event loop costs more than
    decoding it. With a `cache` (of this array, not written meanwhile), chunks decoded for an
    earlier region are taken from it."""
    folder = chunk_folder(array) if isinstance(array, zarr.Array) else None
    if folder is None:
        return np.asarray(array[tuple(slice(o, o + s) for o, s in zip(offset, shape, strict=True))])
    decode, stored = chunk_decoder(array), StoredChunks(folder, array)
    checked = has_checksums(array)

    def decoded(index: tuple[int, ...]) -> np.ndarray | None:
        data = stored.chunk_bytes(index)
        if data is None:
            return None
        if checked:
            data = verified(data, stored.where(index))
        return decode(data).reshape(stored.chunks)

    out = np.empty(shape, array.dtype)
    try:
        for index, into, within in overlapping_chunks(offset, shape, stored.chunks):
            chunk = decoded(index) if cache is None else cache.get(index, decoded)
            if chunk is None:  # never written, or only the fill value: zarr reads the fill value
                out[into] = array.fill_value
            else:
                out[into] = chunk[within]
    finally:
        stored.close()
    return out


def window_region(
    z: int, ys: slice, xs: slice
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(offset, shape) of slice z's window (ys, xs), as read_block and write_block take."""
    return (z, ys.start, xs.start), (1, ys.stop - ys.start, xs.stop - xs.start)


def read_window(array, z: int, ys: slice, xs: slice, cache=None) -> np.ndarray:
    """array[z, ys, xs] as a 2D array, through read_block (slices with start and stop)."""
    return read_block(array, *window_region(z, ys, xs), cache)[0]


class DecodedChunks:
    """The most recently used decoded chunks of one array that nothing writes meanwhile (such as
    prediction's input), at most `max_bytes` of them, shared by the threads of a process.
    Overlapping regions (blocks with their halo) then decode each chunk about once, not once
    per region, even when neighbouring regions are read at the same time. A copy pickled for
    another process starts empty."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.chunks: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self.decoding: dict[tuple[int, ...], Future] = {}
        self.nbytes = 0

    def get(self, index: tuple[int, ...], decode: Callable) -> np.ndarray | None:
        """The chunk at `index`, decoded by `decode(index)` (None: not stored) unless cached or
        being decoded by another thread, whose result is then waited for."""
        with self.lock:
            if index in self.chunks:
                self.chunks.move_to_end(index)
                return self.chunks[index]
            pending = self.decoding.get(index)
            if pending is None:
                self.decoding[index] = decoded = Future()
        if pending is not None:
            return pending.result()
        try:
            chunk = decode(index)  # outside the lock: threads decode different chunks at once
        except BaseException as error:
            with self.lock:
                del self.decoding[index]
            decoded.set_exception(error)
            raise
        with self.lock:
            del self.decoding[index]
            if chunk is not None and chunk.nbytes <= self.max_bytes:
                chunk.flags.writeable = False  # shared by every region that reads it
                self.chunks[index] = chunk
                self.nbytes += chunk.nbytes
                while self.nbytes > self.max_bytes:
                    self.nbytes -= self.chunks.popitem(last=False)[1].nbytes
        decoded.set_result(chunk)
        return chunk

    def __getstate__(self) -> dict:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"])


def overlapping_chunks(offset, shape, chunk_shape):
    """(chunk index, where its part lies in the region, where that part lies in the chunk) for
    each chunk the region offset : offset + shape overlaps."""
    spans = [
        range(o // c, (o + s - 1) // c + 1)
        for o, s, c in zip(offset, shape, chunk_shape, strict=True)
    ]
    for index in itertools.product(*spans):
        into, within = [], []
        for i, o, s, c in zip(index, offset, shape, chunk_shape, strict=True):
            start, stop = max(o, i * c), min(o + s, (i + 1) * c)
            into.append(slice(start - o, stop - o))
            within.append(slice(start - i * c, stop - i * c))
        yield index, tuple(into), tuple(within)


class StoredChunks:
    """The encoded bytes of an array's chunks in its local folder: a chunk file each, or inside
    shard files, found through the shard's index (whose crc32c is checked, as zarr does)."""

    def __init__(self, folder: str, array: zarr.Array):
        self.folder, self.metadata, self.chunks = folder, array.metadata, array.chunks
        self.shards = array.shards
        if self.shards is not None:
            self.per_shard = tuple(s // c for s, c in zip(self.shards, self.chunks, strict=True))
            self.index_at_start = index_at_start(array)
        self.open_shards: dict[tuple[int, ...], tuple[int, np.ndarray] | None] = {}

    def path(self, index: tuple[int, ...]) -> str:
        return os.path.join(self.folder, self.metadata.encode_chunk_key(index))

    def where(self, index: tuple[int, ...]) -> str:
        """The chunk's file, or its shard's file and its index, for messages."""
        if self.shards is None:
            return self.path(index)
        shard = tuple(i // n for i, n in zip(index, self.per_shard, strict=True))
        return f"{self.path(shard)} (chunk {'/'.join(map(str, index))})"

    def chunk_bytes(self, index: tuple[int, ...]) -> bytes | None:
        if self.shards is None:
            try:
                with open(self.path(index), "rb", buffering=0) as file:
                    return file.readall()
            except FileNotFoundError:
                return None
        shard = tuple(i // n for i, n in zip(index, self.per_shard, strict=True))
        if shard not in self.open_shards:
            self.open_shards[shard] = self.open_shard(shard)
        if self.open_shards[shard] is None:
            return None
        file, table = self.open_shards[shard]
        start, length = table[tuple(i % n for i, n in zip(index, self.per_shard, strict=True))]
        return None if start == NO_CHUNK else os.pread(file, int(length), int(start))

    def open_shard(self, shard: tuple[int, ...]) -> tuple[int, np.ndarray] | None:
        """The shard file's descriptor and its (offset, length) table, or None if it is absent."""
        import google_crc32c

        path = self.path(shard)
        try:
            file = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        size = 16 * int(np.prod(self.per_shard)) + 4  # 2 uint64 per chunk, then the crc32c
        where = 0 if self.index_at_start else os.fstat(file).st_size - size
        raw = os.pread(file, size, where)
        if len(raw) != size or google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            os.close(file)
            raise UnetsegError(f"{path}: shard index is damaged (its crc32c does not match)")
        table = np.frombuffer(raw[:-4], dtype="<u8").reshape(*self.per_shard, 2)
        return file, table

    def close(self) -> None:
        for opened in self.open_shards.values():
            if opened is not None:
                os.close(opened[0])
        self.open_shards.clear()


def has_checksums(array: zarr.Array) -> bool:
    """Whether each chunk ends in its crc32c (the stores this package writes; io.create_ome_zarr)."""
    return len(array.compressors) == 2 and isinstance(array.compressors[1], Crc32cCodec)


def verified(data: bytes, where: str) -> bytes:
    """The chunk's bytes without its crc32c, which must match them: a flipped bit on the disk or
    the network file system is reported, not decoded into wrong values."""
    import google_crc32c

    body = data[:-4]  # a copy of the compressed bytes: cheap beside decoding them
    if len(data) < 4 or google_crc32c.value(body) != int.from_bytes(data[-4:], "little"):
        raise UnetsegError(
            f"{where}: chunk is damaged (its crc32c checksum does not match); rerun the step "
            "that wrote this store"
        )
    return body


def chunk_decoder(array: zarr.Array) -> Callable[[bytes], np.ndarray]:
    """The flat values of one encoded chunk (the inverse of `chunk_encoder`)."""
    blosc, dtype = array_blosc(array), stored_dtype(array)
    return lambda data: np.frombuffer(blosc.decode(data), dtype=dtype)


def array_blosc(array: zarr.Array) -> numcodecs.Blosc:
    codec = array.compressors[0]
    return blosc_codec(codec.cname.value, codec.clevel, codec.shuffle.value, codec.blocksize,
                       codec.typesize)  # fmt: skip


def stored_dtype(array: zarr.Array) -> np.dtype:
    return array.dtype.newbyteorder("<")  # the bytes codec stores little-endian (chunk_folder)


def chunk_folder(array: zarr.Array) -> str | None:
    """The folder of the array's chunk (or shard) files, where `read_block` reads them
    directly; else None."""
    store = array.store_path.store
    plain_blosc = (
        array.metadata.zarr_format == 3
        and not array.filters
        and isinstance(array.serializer, BytesCodec)
        and getattr(array.serializer.endian, "value", "little") == "little"
        and len(array.compressors) in (1, 2)
        and isinstance(array.compressors[0], BloscCodec)
        and (len(array.compressors) == 1 or has_checksums(array))
        and (array.shards is None or plain_index(sharding_codec(array)))
    )
    if not plain_blosc or not isinstance(store, LocalStore):
        return None
    return os.path.join(store.root, array.store_path.path)


def sharding_codec(array: zarr.Array) -> ShardingCodec:
    return array.metadata.codecs[0]


def index_at_start(array: zarr.Array) -> bool:
    """Whether the array's shard files hold their index before the chunks (else after)."""
    return sharding_codec(array).index_location.value == "start"


def plain_index(codec: ShardingCodec) -> bool:
    """A shard index of little-endian bytes then crc32c, zarr's default."""
    index_codecs = codec.index_codecs
    return (
        len(index_codecs) == 2
        and isinstance(index_codecs[0], BytesCodec)
        and index_codecs[0].endian.value == "little"
        and isinstance(index_codecs[1], Crc32cCodec)
    )


@functools.lru_cache(maxsize=16)
def blosc_codec(cname: str, clevel: int, shuffle: str, blocksize: int, typesize: int):
    """numcodecs' Blosc with a BloscCodec's settings, as zarr builds it."""
    return numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=SHUFFLES[shuffle],
                           blocksize=blocksize, typesize=typesize)  # fmt: skip
