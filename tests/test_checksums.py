"""Every store the workflow writes carries a crc32c per chunk: a flipped byte in a chunk file is
reported with the store and the chunk, whether our reader or zarr's reads it; a store without
checksums (a user's own) is read as it is."""

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from conftest import write_tiff

from unetseg import UnetsegError, blocks, io
from unetseg.cli import main
from unetseg.unet import UNet


def flip_a_byte(chunk_file: Path, at: int = 20) -> None:
    damaged = bytearray(chunk_file.read_bytes())
    damaged[at] ^= 0x01
    chunk_file.write_bytes(bytes(damaged))


@pytest.fixture
def raw_store(tmp_path):
    raw = np.random.default_rng(0).integers(0, 255, (2, 64, 64)).astype(np.uint8)
    assert main(["chunk", str(write_tiff(tmp_path / "raw.tif", raw)), str(tmp_path / "raw.zarr"),
                 "--chunks", "1,32,32"]) == 0  # fmt: skip
    return tmp_path / "raw.zarr", raw


def test_stores_written_carry_a_checksum_per_chunk(raw_store):
    store, raw = raw_store
    array = io.open_zarr(store)
    assert blocks.has_checksums(array) and blocks.chunk_folder(array, for_writing=False) is not None
    np.testing.assert_array_equal(blocks.read_block(array, (0, 0, 0), raw.shape), raw)


@pytest.mark.parametrize("shards", [None, (1, 64, 64)])
def test_our_reader_names_the_damaged_chunk(tmp_path, shards):
    data = np.random.default_rng(1).integers(0, 255, (2, 64, 64)).astype(np.uint8)
    array = io.create_ome_zarr(
        tmp_path / "a.zarr", data.shape, np.uint8, (1, 32, 32), shards=shards
    )
    array[...] = data
    chunk = tmp_path / "a.zarr/0/c/1/0/1" if shards is None else tmp_path / "a.zarr/0/c/1/0/0"
    flip_a_byte(chunk, at=20 if shards is None else 40)
    where = str(chunk) if shards is None else rf"{chunk} \(chunk 1/\d/\d\)"
    with pytest.raises(UnetsegError, match=rf"{where}: chunk is damaged \(its crc32c"):
        blocks.read_block(io.open_zarr(tmp_path / "a.zarr"), (0, 0, 0), data.shape)


def test_a_stage_reading_through_zarr_names_store_and_chunk(tmp_path, raw_store, capsys):
    """predict and segment read their inputs with our reader, export through zarr."""
    store, _ = raw_store
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4).eval()
    torch.save({"model_config": model.config, "model_state": model.state_dict()}, tmp_path / "m.pt")
    flip_a_byte(store / "0/c/1/1/0")
    assert main(["predict", str(tmp_path / "m.pt"), str(store), str(tmp_path / "p.zarr"),
                 "--tile-out", "28", "--block-px", "32", "--device", "cpu"]) == 1  # fmt: skip
    assert f"{store}/0/c/1/1/0: chunk is damaged" in capsys.readouterr().err
    assert not (tmp_path / "p.zarr").exists()

    probability = io.create_ome_zarr(tmp_path / "prob.zarr", (2, 64, 64), np.float16, (1, 32, 32))
    probability[...] = np.random.default_rng(2).random((2, 64, 64)).astype(np.float16)
    flip_a_byte(tmp_path / "prob.zarr/0/c/0/1/1")
    assert main(["segment", str(tmp_path / "prob.zarr"), str(tmp_path / "s.zarr"),
                 "--threshold", "0.5"]) == 1  # fmt: skip
    assert f"{tmp_path / 'prob.zarr'}/0/c/0/1/1: chunk is damaged" in capsys.readouterr().err
    # export reads through zarr, whose error names no chunk: the store is searched for it
    assert main(["export", str(tmp_path / "prob.zarr"), str(tmp_path / "p.tif")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'prob.zarr'}: chunk 0/1/1 is damaged" in err[0], err
    assert not (tmp_path / "p.tif").exists()
    assert not (tmp_path / "s.zarr").exists()


def test_a_store_without_checksums_is_read_as_it_is(tmp_path):
    data = np.random.default_rng(3).integers(0, 255, (2, 64, 64)).astype(np.uint8)
    theirs = zarr.create_array(str(tmp_path / "theirs.zarr"), shape=data.shape, chunks=(1, 32, 32),
                               dtype=np.uint8, compressors=io.blosc())  # fmt: skip
    theirs[...] = data
    assert (
        not blocks.has_checksums(theirs)
        and blocks.chunk_folder(theirs, for_writing=False) is not None
    )
    np.testing.assert_array_equal(blocks.read_block(theirs, (0, 0, 0), data.shape), data)
