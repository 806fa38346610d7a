import numpy as np
import pytest
import torch
import zarr
from conftest import write_tiff

from unetseg import UnetsegError, io
from unetseg.chunk import chunk_volume
from unetseg.model import UNet
from unetseg.predict import load_model, predict_block, predict_volume, predict_whole_slice


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UNet(depth=3, base_channels=4).eval()


@pytest.fixture
def model_file(tmp_path, model):
    path = tmp_path / "model.pt"
    torch.save({"model_config": model.config, "model_state": model.state_dict()}, path)
    return path


def stitched(model, raw, tile_out, block):
    out = np.zeros(raw.shape[1:], np.float32)
    for y in range(0, raw.shape[1], block):
        for x in range(0, raw.shape[2], block):
            rows, cols = (y, min(y + block, raw.shape[1])), (x, min(x + block, raw.shape[2]))
            out[slice(*rows), slice(*cols)] = predict_block(model, raw, 0, rows, cols, tile_out, 3)
    return out


@pytest.mark.parametrize("shape", [(1, 100, 130), (1, 30, 17), (1, 9, 40), (1, 150, 121)])
@pytest.mark.parametrize("tile_out, block", [(12, 37), (60, 64), (100, 1000)])
def test_stitched_tiles_equal_whole_slice(model, shape, tile_out, block):
    raw = np.random.default_rng(shape[1]).integers(0, 255, shape).astype(np.uint8)
    whole = predict_whole_slice(model, raw[0])
    assert np.abs(stitched(model, raw, tile_out, block) - whole).max() <= 1e-5


def test_tiles_off_the_grid_would_not_be_seamless(model):
    """Guards the test above: shifting a tile by less than 2**depth changes its output."""
    raw = np.random.default_rng(0).random((1, 120, 120)).astype(np.float32)
    on_grid = predict_block(model, raw, 0, (16, 76), (16, 76), 60)
    shifted = predict_block(model, raw[:, 3:, 3:], 0, (13, 73), (13, 73), 60)
    assert np.abs(on_grid - shifted).max() > 1e-4


def test_predict_volume_store(tmp_path, model, model_file):
    raw = np.random.default_rng(0).integers(0, 255, (3, 70, 50)).astype(np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    predict_volume(
        model_file,
        tmp_path / "raw.zarr",
        tmp_path / "p.zarr",
        tile_out=28,
        block_px=32,
        workers=2,
        threads=2,
        out_dtype="float32",
    )
    probability = io.open_zarr(tmp_path / "p.zarr")
    assert probability.shape == raw.shape and probability.chunks == (1, 32, 32)
    for z in range(3):
        assert np.abs(probability[z] - predict_whole_slice(model, raw[z])).max() <= 1e-5
    attrs = zarr.open_group(str(tmp_path / "p.zarr")).attrs["unetseg"]
    assert attrs["model_config"] == model.config and attrs["tile_out"] == 28
    predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "h.zarr", tile_out=28, block_px=32)
    half = io.open_zarr(tmp_path / "h.zarr")
    assert half.dtype == np.float16
    assert np.abs(half[...] - probability[...]).max() < 1e-3


def test_bad_model_and_tile(tmp_path, model_file):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    with pytest.raises(UnetsegError, match="broken.pt: not a usable unetseg model"):
        load_model(str(broken))
    raw = np.zeros((1, 40, 40), np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    with pytest.raises(UnetsegError, match="predict.tile_out: 30 .* nearest valid: 28 or 36"):
        predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "p.zarr", tile_out=30)
    assert not (tmp_path / "p.zarr").exists()


def test_pretrained_model_with_another_architecture_is_refused(tmp_path, model_file):
    raw = np.zeros((1, 40, 40), np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    expected = {"depth": 4, "base_channels": 64}
    with pytest.raises(
        UnetsegError,
        match="model.pretrained: .*model.pt has depth 3, but the config says model.depth: 4",
    ):
        predict_volume(
            model_file,
            tmp_path / "raw.zarr",
            tmp_path / "p.zarr",
            tile_out=28,
            expect_architecture=expected,
        )
    assert not (tmp_path / "p.zarr").exists()


def test_no_two_tasks_write_the_same_chunk(tmp_path, model_file, monkeypatch):
    """Record every store write of chunking, weight maps and prediction with 4 Dask workers."""
    from zarr.storage import LocalStore

    from unetseg.weights import compute_weights

    writes = []
    original_set = LocalStore.set

    async def recording_set(self, key, value):
        writes.append(f"{self.root}/{key}")
        return await original_set(self, key, value)

    rng = np.random.default_rng(0)
    write_tiff(tmp_path / "raw.tif", rng.integers(0, 255, (4, 70, 50)).astype(np.uint8))
    labels = np.where(rng.random((4, 70, 50)) > 0.3, 255, 0).astype(np.uint8)
    write_tiff(tmp_path / "labels.tif", labels)
    monkeypatch.setattr(LocalStore, "set", recording_set)
    chunk_volume(tmp_path / "raw.tif", tmp_path / "raw.zarr", chunks=(1, 32, 32), workers=4)
    chunk_volume(
        tmp_path / "labels.tif", tmp_path / "l.zarr", chunks=(1, 32, 32), is_labels=True, workers=4
    )
    compute_weights(tmp_path / "l.zarr", tmp_path / "w.zarr", workers=4)
    predict_volume(
        model_file,
        tmp_path / "raw.zarr",
        tmp_path / "p.zarr",
        tile_out=28,
        block_px=32,
        workers=4,
        threads=4,
    )
    chunk_keys = [key for key in writes if "/c/" in key]
    assert len(chunk_keys) == 4 * 3 * 2 * 4  # 4 stores of 4 x 3 x 2 chunks, each written once
    assert len(set(chunk_keys)) == len(chunk_keys)
