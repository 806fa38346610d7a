"""Blocks written straight to chunk files must be what zarr itself writes, byte for byte."""

import os
import pickle
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec

from unetseg import blocks, io
from unetseg.errors import UnetsegError

SHAPE, CHUNKS = (3, 300, 270), (2, 128, 128)  # edge chunks on every axis


def chunk_files(store: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and "c" in p.relative_to(store).parts
    }


def volume(dtype) -> np.ndarray:
    values = np.random.default_rng(0).random(SHAPE) * 200
    values[:, :64] = 0  # all-zero chunks are written too
    return values.astype(dtype)


def by_zarr_and_by_blocks(folder: Path, data, **options) -> tuple[zarr.Array, zarr.Array]:
    with io.bulk_writes():
        ours = io.create_ome_zarr(folder / "ours.zarr", SHAPE, data.dtype, CHUNKS, **options)
        theirs = io.create_ome_zarr(folder / "theirs.zarr", SHAPE, data.dtype, CHUNKS, **options)
    return write_both(ours, theirs, data)


def array(path: Path, shards, dtype) -> zarr.Array:
    """A plain array (no OME metadata), unsharded or sharded."""
    return zarr.create_array(
        path, shape=SHAPE, chunks=CHUNKS, shards=shards, dtype=dtype, compressors=io.blosc()
    )


def write_both(ours: zarr.Array, theirs: zarr.Array, data) -> tuple[zarr.Array, zarr.Array]:
    theirs[...] = data
    for z in (0, 2):  # two blocks, the second at the edge
        blocks.write_block(ours, (z, 0, 0), data[z : z + 2])
    return ours, theirs


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", "float16"])
def test_direct_chunks_are_zarrs_own_bytes(tmp_path, dtype):
    data = volume(dtype)
    ours, _ = by_zarr_and_by_blocks(tmp_path, data)
    assert blocks.chunk_folder(ours) is not None  # the direct path is the one under test
    written = chunk_files(tmp_path / "ours.zarr")
    assert len(written) == 2 * 3 * 3
    assert written == chunk_files(tmp_path / "theirs.zarr")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "ours.zarr" / "0")[...], data)


def test_a_float_block_is_cast_to_the_arrays_type_as_zarr_casts_it(tmp_path):
    data = volume("float32")
    with io.bulk_writes():
        ours = io.create_ome_zarr(tmp_path / "ours.zarr", SHAPE, "float16", CHUNKS)
        theirs = io.create_ome_zarr(tmp_path / "theirs.zarr", SHAPE, "float16", CHUNKS)
    theirs[...] = data
    blocks.write_block(ours, (0, 0, 0), data)
    assert chunk_files(tmp_path / "ours.zarr") == chunk_files(tmp_path / "theirs.zarr")


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float16"])
@pytest.mark.parametrize("index_location", ["end", "start"])
def test_direct_shards_are_zarrs_own_bytes(tmp_path, dtype, index_location):
    data = volume(dtype)
    shards = {"shape": (2, 256, 256), "index_location": index_location}  # edge shards too
    with io.bulk_writes():
        ours, theirs = (
            array(tmp_path / name, shards, dtype) for name in ("ours.zarr", "theirs.zarr")
        )
    write_both(ours, theirs, data)
    assert blocks.chunk_folder(ours) is not None
    written = chunk_files(tmp_path / "ours.zarr")
    assert len(written) == 2 * 2 * 2
    assert written == chunk_files(tmp_path / "theirs.zarr")
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "ours.zarr")[...], data)


@pytest.mark.parametrize("shards", [None, (2, 256, 256)], ids=["chunks", "shards"])
def test_chunks_of_only_the_fill_value_are_skipped_as_zarr_skips_them(tmp_path, shards):
    """With zarr's default `write_empty_chunks` off, all-zero chunks (and a shard of them) are
    not stored; a file left from before is removed, as zarr removes it."""
    data = volume("uint8")
    data[:, :256] = 0  # the first shard row holds only zeros
    ours, theirs = (
        array(tmp_path / name, shards, "uint8") for name in ("ours.zarr", "theirs.zarr")
    )
    assert not ours.config.write_empty_chunks
    blocks.write_block(ours, (0, 0, 0), np.full((2, *SHAPE[1:]), 9, np.uint8))  # to be removed
    write_both(ours, theirs, data)
    written = chunk_files(tmp_path / "ours.zarr")
    assert written == chunk_files(tmp_path / "theirs.zarr")
    assert len(written) == (2 * 1 * 2 if shards else 2 * 1 * 3)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "ours.zarr")[...], data)


@pytest.mark.parametrize(
    "make",
    [
        lambda path: io.create_ome_zarr(path, SHAPE, "float32", CHUNKS, quantise_to_uint8=True),
        lambda path: zarr.create_array(
            path,
            shape=SHAPE,
            chunks=(2, 256, 256),
            dtype="float32",
            compressors=None,
            serializer=ShardingCodec(
                chunk_shape=CHUNKS, codecs=[BytesCodec(), BloscCodec()], index_codecs=[BytesCodec()]
            ),
        ),
    ],
    ids=["filtered", "index-without-crc32c"],
)
def test_other_layouts_go_through_zarr(tmp_path, make):
    data = volume("float32") / 200
    with io.bulk_writes():
        ours, theirs = make(tmp_path / "ours.zarr"), make(tmp_path / "theirs.zarr")
    write_both(ours, theirs, data)
    assert blocks.chunk_folder(ours) is None
    np.testing.assert_array_equal(ours[...], theirs[...])


def test_a_block_off_the_chunk_grid_goes_through_zarr(tmp_path):
    data = volume("uint8")
    with io.bulk_writes():
        ours = io.create_ome_zarr(tmp_path / "ours.zarr", SHAPE, data.dtype, CHUNKS)
    assert not blocks.is_chunk_aligned(ours, (0, 64, 0), (2, 128, 128))
    assert blocks.is_chunk_aligned(ours, (2, 256, 256), (1, 44, 14))  # ends at the edge
    blocks.write_block(ours, (0, 64, 0), data[:2, 64:192, :128])
    np.testing.assert_array_equal(ours[:2, 64:192, :128], data[:2, 64:192, :128])
    assert ours[0, :64].max() == 0


def test_a_store_in_memory_goes_through_zarr():
    array = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 4), chunks=(2, 2), dtype="u1")
    assert blocks.chunk_folder(array) is None
    blocks.write_block(array, (0, 0), np.full((4, 4), 7, np.uint8))
    assert (array[...] == 7).all()


@pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux's")
def test_writeback_starts_through_libc_on_linux(tmp_path):
    function = blocks.sync_file_range()
    assert function is not None
    file = os.open(tmp_path / "chunk", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(file, b"x" * 4096)
        assert function(file, 0, 0, blocks.SYNC_FILE_RANGE_WRITE) == 0
        assert function(-1, 0, 0, blocks.SYNC_FILE_RANGE_WRITE) == -1  # the call reaches libc
    finally:
        os.close(file)


REGIONS = [  # (offset, shape): whole, inside one chunk, across chunks, at every edge
    ((0, 0, 0), SHAPE),
    ((1, 10, 20), (1, 50, 60)),
    ((0, 100, 120), (3, 157, 140)),
    ((2, 250, 200), (1, 50, 70)),
]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float16"])
@pytest.mark.parametrize(
    "shards",
    [None, {"shape": (2, 256, 256), "index_location": "end"},
     {"shape": (2, 256, 256), "index_location": "start"}],
    ids=["chunks", "shards-index-at-end", "shards-index-at-start"],
)  # fmt: skip
def test_blocks_read_from_the_files_are_what_zarr_reads(tmp_path, dtype, shards):
    """Chunks or shards never written, and chunks zarr left out (only the fill value), read as
    the fill value, as zarr reads them."""
    data = volume(dtype)
    data[:, 256:] = 7  # the fill value: not stored, as write_empty_chunks is off
    stored = zarr.create_array(
        tmp_path / "a.zarr", shape=SHAPE, chunks=CHUNKS, shards=shards, dtype=dtype,
        compressors=io.blosc(), fill_value=7,
    )  # fmt: skip
    stored[:2] = data[:2]  # the last plane is never written
    assert blocks.chunk_folder(stored, for_writing=False) is not None
    cache = blocks.DecodedChunks(max_bytes=2**20)  # shared by the regions, as in prediction
    for offset, shape in REGIONS * 2:
        selection = tuple(slice(o, o + s) for o, s in zip(offset, shape, strict=True))
        for read in (blocks.read_block(stored, offset, shape),
                     blocks.read_block(stored, offset, shape, cache)):  # fmt: skip
            assert read.dtype == stored.dtype
            np.testing.assert_array_equal(read, stored[selection])
            if offset[0] + shape[0] == SHAPE[0]:
                np.testing.assert_array_equal(read[-1], 7)  # the plane never written
    assert 0 < cache.nbytes <= cache.max_bytes


def test_decoded_chunks_are_kept_up_to_their_bound_least_recently_used_first():
    decoded = []

    def decode(index):
        decoded.append(index)
        return None if index == (9,) else np.full(100, index[0], np.uint8)

    cache = blocks.DecodedChunks(max_bytes=300)  # three chunks
    for index in [(0,), (1,), (2,), (0,), (3,), (0,), (1,), (9,), (9,)]:
        chunk = cache.get(index, decode)
        assert chunk is None if index == (9,) else chunk[0] == index[0]
    # (1,) was the least recently used when (3,) came; a chunk not stored is never kept
    assert decoded == [(0,), (1,), (2,), (3,), (1,), (9,), (9,)]
    assert list(cache.chunks) == [(3,), (0,), (1,)] and cache.nbytes == 300
    assert not cache.get((0,), decode).flags.writeable  # shared: no region may change it
    assert cache.get((5,), lambda index: np.zeros(301, np.uint8)).nbytes == 301  # not kept
    assert list(cache.chunks) == [(3,), (1,), (0,)]


def test_a_chunk_that_one_thread_decodes_is_waited_for_not_decoded_again():
    calls, started, release = [], threading.Event(), threading.Event()

    def slow_decode(index):
        calls.append(index)
        started.set()
        release.wait(5)
        return np.zeros(10, np.uint8)

    cache = blocks.DecodedChunks(max_bytes=100)
    got = []
    first = threading.Thread(target=lambda: got.append(cache.get((0,), slow_decode)))
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=lambda: got.append(cache.get((0,), slow_decode)))
    second.start()
    second.join(0.2)  # waiting for the first thread's chunk, not decoding it again
    assert second.is_alive() and calls == [(0,)]
    release.set()
    first.join(5), second.join(5)
    assert calls == [(0,)] and len(got) == 2 and got[0] is got[1]


def test_a_failed_decode_reaches_the_waiting_threads_and_is_not_kept():
    started, release, errors = threading.Event(), threading.Event(), []
    cache = blocks.DecodedChunks(max_bytes=100)

    def damaged(index):
        started.set()
        release.wait(5)
        raise UnetsegError("c/0: damaged")

    def read():
        try:
            cache.get((0,), damaged)
        except UnetsegError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=read)]
    threads[0].start()
    assert started.wait(5)
    threads.append(threading.Thread(target=read))
    threads[1].start()
    threads[1].join(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert errors == ["c/0: damaged"] * 2
    assert not cache.chunks and not cache.decoding
    assert cache.get((0,), lambda index: np.ones(10, np.uint8))[0] == 1  # tried again


def test_decoded_chunks_pickled_for_another_process_start_empty():
    cache = blocks.DecodedChunks(max_bytes=300)
    cache.get((0,), lambda index: np.zeros(100, np.uint8))
    copy = pickle.loads(pickle.dumps(cache))
    assert (copy.max_bytes, copy.nbytes, len(copy.chunks)) == (300, 0, 0)
    assert copy.get((1,), lambda index: np.ones(100, np.uint8))[0] == 1


def test_blocks_read_from_a_read_only_store_and_from_other_arrays(tmp_path):
    data = volume("float32") / 200
    quantised = io.create_ome_zarr(tmp_path / "q.zarr", SHAPE, "float32", CHUNKS,
                                   quantise_to_uint8=True)  # fmt: skip
    quantised[...] = data
    plain = io.create_ome_zarr(tmp_path / "p.zarr", SHAPE, "float32", CHUNKS)
    plain[...] = data
    offset, shape = REGIONS[2]
    selection = tuple(slice(o, o + s) for o, s in zip(offset, shape, strict=True))
    for array in (io.open_zarr(tmp_path / "p.zarr"), io.open_zarr(tmp_path / "q.zarr"), data):
        np.testing.assert_array_equal(blocks.read_block(array, offset, shape), array[selection])
    assert blocks.chunk_folder(io.open_zarr(tmp_path / "p.zarr"), for_writing=False)


def test_a_big_endian_store_is_neither_read_nor_written_directly(tmp_path):
    data = volume("uint16")
    stored = zarr.create_array(
        tmp_path / "b.zarr", shape=SHAPE, chunks=CHUNKS, dtype="uint16",
        serializer=BytesCodec(endian="big"), compressors=io.blosc(),
    )  # fmt: skip
    assert blocks.chunk_folder(stored) is None
    blocks.write_block(stored, (0, 0, 0), data)
    np.testing.assert_array_equal(blocks.read_block(stored, (0, 0, 0), SHAPE), data)


def test_a_damaged_shard_index_is_named(tmp_path):
    stored = array(tmp_path / "s.zarr", (2, 256, 256), "uint8")
    stored[...] = volume("uint8")
    shard = tmp_path / "s.zarr" / "c" / "0" / "0" / "0"
    damaged = bytearray(shard.read_bytes())
    damaged[-10] ^= 0xFF  # inside the index, at the end of the file
    shard.write_bytes(bytes(damaged))
    with pytest.raises(UnetsegError, match=r"c/0/0/0: shard index is damaged"):
        blocks.read_block(stored, (0, 0, 0), (1, 10, 10))
