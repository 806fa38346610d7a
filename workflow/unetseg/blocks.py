"""Blocks written into and read from Zarr arrays, as fast as the codec allows.

zarr-python hands each chunk of a write through its event loop and a thread pool, and writes it
to a temporary file that it renames into place. For whole chunks (or whole shards) of a local
store with the default codecs (bytes, then Blosc; inside shards, an index of bytes and crc32c),
`write_block` instead encodes the chunks with the array's own Blosc settings (and the crc32c
that the stores this package writes end each chunk with) and writes each chunk, or each shard
with its index, to the file zarr would have written: the same bytes, checked against zarr in
tests/test_blocks.py, 1.4-2.0x as fast (`python -m bench chunk`, chunk_direct_vs_zarr). The
maintained alternatives were measured against it (`python -m bench writers`, and the chunk
command end to end; BENCHMARKS.md): zarrs reached 0.76-0.84x of it on the writes and 0.79-0.92x
on chunking end to end, tensorstore 0.40-0.90x, so this encoder stays. `read_block` reads any
region of such an array the same way, chunk files decoded straight into the region (each
chunk's crc32c checked first). Every other layout (filters, other codecs or stores, unaligned
blocks for writing) goes through zarr.

Writing a file in place is safe here because every store is written under a temporary name
(`io.atomic_output`, or prediction's `.partial` store whose finished blocks are recorded only
after their chunks are written).
"""

from __future__ import annotations

import contextlib
import ctypes
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
IOV_MAX = os.sysconf("SC_IOV_MAX")  # buffers one writev takes
SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writeback of the range's dirty pages, do not wait


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
    """array[offset : offset + block.shape] = block, for a block that starts on a chunk (or shard)
    boundary and ends on one or at the array's edge (what the stages write)."""
    folder = chunk_folder(array)
    if folder is None or not is_chunk_aligned(array, offset, block.shape):
        array[tuple(slice(o, o + s) for o, s in zip(offset, block.shape, strict=True))] = block
        return
    encode, sharded = chunk_encoder(array), array.shards is not None  # looked up once per block
    made = set()
    for index, piece in whole_pieces(block, offset, file_shape(array), array.fill_value):
        path = os.path.join(folder, array.metadata.encode_chunk_key(index))
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        if sharded:
            pieces = encode_shard(piece, index, array, encode)
        else:
            pieces = encode(piece) if keeps(array, piece) else None
        if pieces is None:  # only the fill value: zarr stores nothing, and removes what was there
            with_no_file(path)
        else:
            write_file(path, pieces)


def read_block(
    array, offset: tuple[int, ...], shape: tuple[int, ...], cache: DecodedChunks | None = None
) -> np.ndarray:
    """array[offset : offset + shape], decoded straight from the chunk (or shard) files of a Zarr
    array that `write_block` would write directly; other arrays (any other Zarr layout, numpy)
    are sliced. Prediction reads its input this way: per chunk, zarr's event loop costs more than
    decoding it. With a `cache` (of this array, not written meanwhile), chunks decoded for an
    earlier region are taken from it."""
    folder = chunk_folder(array, for_writing=False) if isinstance(array, zarr.Array) else None
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


def encode_shard(
    shard: np.ndarray, shard_index: tuple[int, ...], array: zarr.Array, encode: Callable
) -> list[bytes] | None:
    """A shard's bytes, as zarr's sharding codec lays them out: the stored chunks in Morton order,
    then (or first) the index of their offsets and lengths with its crc32c; None if no chunk is
    stored. Chunks wholly past the array's edge are not stored."""
    import google_crc32c  # zarr's own crc32c; only sharded stores need it

    chunk_shape = array.chunks  # a zarr property computed on each access: once per shard
    chunks_per_shard = tuple(s // c for s, c in zip(shard.shape, chunk_shape, strict=True))
    inside = [n - i * s for n, i, s in zip(array.shape, shard_index, shard.shape, strict=True)]
    index = np.full((*chunks_per_shard, 2), NO_CHUNK, dtype="<u8")
    pieces, start = [], 0
    for coords in morton_order(chunks_per_shard):
        corner = [i * c for i, c in zip(coords, chunk_shape, strict=True)]
        chunk = shard[tuple(slice(o, o + c) for o, c in zip(corner, chunk_shape, strict=True))]
        if all(o < n for o, n in zip(corner, inside, strict=True)) and keeps(array, chunk):
            encoded = encode(chunk)
            length = sum(len(piece) for piece in encoded)
            pieces += encoded
            index[coords] = start, length
            start += length
    if not pieces:
        return None
    at_start = index_at_start(array)
    if at_start:  # offsets count from the file's start, past the index and its checksum
        index[..., 0][index[..., 0] != NO_CHUNK] += index.nbytes + 4
    index_bytes = index.tobytes()
    index_bytes += np.uint32(google_crc32c.value(index_bytes)).tobytes()
    return [index_bytes, *pieces] if at_start else [*pieces, index_bytes]


@functools.lru_cache(maxsize=16)
def morton_order(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Grid positions sorted by their compressed Morton code (bits of the axes interleaved, axes
    that have run out of bits skipped), zarr's order of chunks within a shard."""
    bits = [(n - 1).bit_length() for n in shape]

    def code(position: tuple[int, ...]) -> int:
        value, out_bit = 0, 0
        for bit in range(max(bits, default=0)):
            for axis, coordinate in enumerate(position):
                if bit < bits[axis]:
                    value |= ((coordinate >> bit) & 1) << out_bit
                    out_bit += 1
        return value

    return sorted(itertools.product(*map(range, shape)), key=code)


def keeps(array: zarr.Array, chunk: np.ndarray) -> bool:
    """Whether zarr would store this chunk: always, unless the array skips chunks that hold only
    its fill value (`write_empty_chunks` off; NaN fill counts as equal to NaN)."""
    if array.config.write_empty_chunks:
        return True
    fill = array.fill_value
    if chunk.dtype.kind == "f" and np.isnan(fill):
        return not np.isnan(chunk).all()
    return not np.array_equiv(chunk, fill)


def chunk_encoder(array: zarr.Array) -> Callable[[np.ndarray], list[bytes]]:
    """What the array's bytes and Blosc codecs (and crc32c, if it has one) make of one chunk, as
    the pieces of its file: the crc32c a piece of its own, not a copy of the chunk with it."""
    blosc, dtype = array_blosc(array), stored_dtype(array)
    if not has_checksums(array):
        return lambda chunk: [blosc.encode(np.ascontiguousarray(chunk, dtype=dtype))]
    import google_crc32c

    def encode(chunk: np.ndarray) -> list[bytes]:
        data = blosc.encode(np.ascontiguousarray(chunk, dtype=dtype))
        return [data, google_crc32c.value(data).to_bytes(4, "little")]

    return encode


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


def write_file(path: str, pieces: list[bytes]) -> None:
    """The pieces, one after the other, as the file at `path`: one open, gathered writes, one
    close, without a Python file object or joining the pieces first."""
    file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        views = [memoryview(piece) for piece in pieces]
        while views:  # a regular file takes all at once, barring a signal or a full disk
            written = os.writev(file, views[:IOV_MAX])
            while views and written >= len(views[0]):
                written -= len(views.pop(0))
            if views:
                views[0] = views[0][written:]
        start_writeback(file)
    finally:
        os.close(file)


def start_writeback(file: int) -> None:
    """Have the kernel start writing the file to disk now, without waiting for it (Linux
    `sync_file_range` with SYNC_FILE_RANGE_WRITE), so the disk works while the next chunks are
    encoded rather than all at the end, and dirty memory stays small; elsewhere, nothing. By hand,
    on 2 GiB: 8.2 against 9.0 s to the end of a `sync` (medians of 5 alternating rounds)."""
    function = sync_file_range()
    if function is not None:
        function(file, 0, 0, SYNC_FILE_RANGE_WRITE)  # a failure only means no early start


@functools.cache
def sync_file_range():
    """libc's sync_file_range (Python's os module does not offer it), or None where absent."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


def with_no_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def whole_pieces(block: np.ndarray, offset, piece_shape: tuple[int, ...], fill_value):
    """(grid index, piece of the block) for each chunk (or shard) of `piece_shape` the block
    covers; an edge piece is stored whole, so it is padded with the fill value."""
    first = [o // c for o, c in zip(offset, piece_shape, strict=True)]
    counts = [-(-s // c) for s, c in zip(block.shape, piece_shape, strict=True)]
    for steps in itertools.product(*map(range, counts)):
        piece = block[
            tuple(slice(i * c, (i + 1) * c) for i, c in zip(steps, piece_shape, strict=True))
        ]
        if piece.shape != piece_shape:
            whole = np.full(piece_shape, fill_value, dtype=block.dtype)
            whole[tuple(slice(0, s) for s in piece.shape)] = piece
            piece = whole
        yield tuple(f + i for f, i in zip(first, steps, strict=True)), piece


def file_shape(array: zarr.Array) -> tuple[int, ...]:
    """The shape each file of the array holds: a shard when sharded, else a chunk."""
    return array.shards or array.chunks


def chunk_folder(array: zarr.Array, for_writing: bool = True) -> str | None:
    """The folder of the array's chunk (or shard) files, where they may be read or written
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
    if not plain_blosc or not isinstance(store, LocalStore) or (for_writing and store.read_only):
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


def is_chunk_aligned(array: zarr.Array, offset, shape) -> bool:
    """Whether the region starts on a file (chunk or shard) boundary and ends on one or at the
    array's edge."""
    return all(
        o % c == 0 and (o + s == n or (o + s) % c == 0)
        for o, s, c, n in zip(offset, shape, file_shape(array), array.shape, strict=True)
    )


@functools.lru_cache(maxsize=16)
def blosc_codec(cname: str, clevel: int, shuffle: str, blocksize: int, typesize: int):
    """numcodecs' Blosc with a BloscCodec's settings, as zarr builds it."""
    return numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=SHUFFLES[shuffle],
                           blocksize=blocksize, typesize=typesize)  # fmt: skip
