import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zarr
from conftest import TEST_DEVICE, TEST_PRECISIONS, write_tiff

from unetseg import UnetsegError, blocks, io
from unetseg.chunk import chunk_volume
from unetseg.intensity import normalized, unit_mapping
from unetseg.model import UNet
from unetseg.predict import (
    RAW_CACHE_BYTES,
    forward_tiles,
    load_model,
    predict_block,
    predict_volume,
    predict_whole_slice,
    raw_cache_bytes,
)


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


def test_chunks_that_make_tiles_hang_over_warn(tmp_path, model_file, caplog):
    """Depth 3, tile_out 28: the stride is 24. Blocks of 32 px take 2 x 2 tiles each."""
    raw = np.random.default_rng(0).integers(0, 255, (1, 96, 96)).astype(np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    with caplog.at_level("WARNING", logger="unetseg.predict"):
        predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "a.zarr", 28, block_px=32)
    assert "predict.block_px 32 with tile_out 28 takes 2.25x the tiles" in caplog.text
    assert "such as 24" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="unetseg.predict"):
        predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "b.zarr", 28, block_px=48)
    assert "block_px" not in caplog.text


def test_group_norm_tiles_are_not_seamless_and_prediction_says_so(tmp_path, model, caplog):
    """The paper's network (no normalisation layers) predicts a slice cut into tiles as it is
    whole (the tests above); with GroupNorm each tile has its own statistics, so it does not,
    and predict_volume warns where a slice takes more than one tile."""
    torch.manual_seed(0)
    grouped = UNet(depth=3, base_channels=8, norm="group").eval()
    raw = np.random.default_rng(1).integers(0, 255, (1, 96, 96)).astype(np.uint8)
    whole = predict_whole_slice(grouped, raw[0])
    assert np.abs(stitched(grouped, raw, 28, 48) - whole).max() > 1e-3
    assert np.abs(stitched(model, raw, 28, 48) - predict_whole_slice(model, raw[0])).max() <= 1e-5
    for name, net in (("group", grouped), ("none", model)):
        path = tmp_path / f"{name}.pt"
        torch.save({"model_config": net.config, "model_state": net.state_dict()}, path)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    for name, tile_out, warned in (("group", 28, True), ("group", 100, False), ("none", 28, False)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="unetseg.predict"):
            predict_volume(tmp_path / f"{name}.pt", tmp_path / "raw.zarr",
                           tmp_path / f"{name}-{tile_out}.zarr", tile_out, block_px=96)  # fmt: skip
        assert ("model.norm group: each of the 4 x 4 tiles" in caplog.text) == warned


def test_each_worker_keeps_the_input_chunks_under_a_row_of_blocks_up_to_a_bound():
    """Default layout (512-px chunks, 768-px blocks, depth 4: 952 px of input per block row):
    2 rows of chunks, one more where the row starts off the grid, one for the blocks running
    at the same time; 8 chunks across a 4096-px slice."""

    def raw(width, dtype="uint8", chunks=(1, 512, 512)):
        return zarr.create_array(zarr.storage.MemoryStore(), shape=(3, 4096, width),
                                 chunks=chunks, dtype=dtype)  # fmt: skip

    assert raw_cache_bytes(raw(4096), 768, 4) == 4 * 8 * 512 * 512
    assert raw_cache_bytes(raw(4096, "uint16"), 768, 4) == 2 * 4 * 8 * 512 * 512
    assert raw_cache_bytes(raw(100_000), 768, 4) == RAW_CACHE_BYTES  # the bound
    # chunks 2 slices deep, which the next slice reads again: the whole slice's 4 x 4 chunks
    assert raw_cache_bytes(raw(4096, chunks=(2, 1024, 1024)), 768, 4) == 4 * 4 * 2 * 1024**2


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_prediction_reads_sharded_and_uint16_raw_stores_directly(
    tmp_path, model, model_file, dtype
):
    """The input comes straight from the shard files (blocks.read_block), mirrored at the
    slice's edges, and equals whole-slice inference."""
    top = np.iinfo(dtype).max
    raw = np.random.default_rng(3).integers(0, top, (2, 70, 50), endpoint=True).astype(dtype)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr", (1, 16, 16),
                 shards=(1, 32, 32))  # fmt: skip
    stored = io.open_zarr(tmp_path / "raw.zarr")
    assert stored.shards == (1, 32, 32) and blocks.chunk_folder(stored, for_writing=False)
    predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "p.zarr", tile_out=28,
                   block_px=48, out_dtype="float32")  # fmt: skip
    probability = io.open_zarr(tmp_path / "p.zarr")
    for z in range(2):
        assert np.abs(probability[z] - predict_whole_slice(model, raw[z])).max() <= 1e-5


def test_a_percentile_model_predicts_a_12_bit_volume_as_its_8_bit_version(tmp_path, model):
    """The model records its normalisation; predict maps each volume's own percentiles to 0 and 1,
    so the same image in another grey range (16 x + 100 in uint16) gives the same probabilities,
    which equal whole-slice inference with that mapping; the store records the mapping."""
    model_file = tmp_path / "model.pt"
    settings = {"normalize": "percentile", "normalize_percentiles": [1.0, 99.8]}
    torch.save({"model_config": model.config, "model_state": model.state_dict(),
                "train_config": settings}, model_file)  # fmt: skip
    eight_bit = np.random.default_rng(5).integers(0, 256, (2, 70, 50)).astype(np.uint8)
    twelve_bit = (eight_bit.astype(np.uint16) * 16 + 100).astype(np.uint16)
    maps = {}
    for name, raw in (("8", eight_bit), ("12", twelve_bit)):
        chunk_volume(write_tiff(tmp_path / f"{name}.tif", raw), tmp_path / f"{name}.zarr")
        predict_volume(model_file, tmp_path / f"{name}.zarr", tmp_path / f"p{name}.zarr",
                       tile_out=28, block_px=32, out_dtype="float32")  # fmt: skip
        maps[name] = io.open_zarr(tmp_path / f"p{name}.zarr")[...]
        low, high = np.percentile(raw, [1.0, 99.8])
        recorded = zarr.open_group(str(tmp_path / f"p{name}.zarr")).attrs["unetseg"]
        assert recorded["grey_mapping"] == {"offset": low, "scale": high - low}
        for z in range(2):
            whole = predict_whole_slice(model, raw[z], grey_mapping=(low, high - low))
            assert np.abs(maps[name][z] - whole).max() <= 1e-5
    assert np.abs(maps["8"] - maps["12"]).max() <= 1e-5
    # Read as the release did (unit, the default of a model that records no method), the
    # 12-bit volume would sit in the bottom 6 % of the input range and predict otherwise.
    unit = predict_whole_slice(model, twelve_bit[0])
    assert np.abs(unit - maps["8"][0]).max() > 0.01


def test_a_per_slice_model_predicts_each_slice_by_its_own_percentiles(tmp_path, model):
    """A stack whose second slice is the first one brighter and with more contrast (3 x + 200):
    with percentile_per_slice both give the same probabilities, each equal to whole-slice
    inference with its slice's mapping, and the store records both mappings."""
    model_file = tmp_path / "model.pt"
    settings = {"normalize": "percentile_per_slice", "normalize_percentiles": [1.0, 99.8]}
    torch.save({"model_config": model.config, "model_state": model.state_dict(),
                "train_config": settings}, model_file)  # fmt: skip
    image = np.random.default_rng(6).integers(0, 256, (70, 50)).astype(np.uint16)
    raw = np.stack([image, image * 3 + 200])
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "p.zarr", tile_out=28,
                   block_px=32, out_dtype="float32")  # fmt: skip
    probability = io.open_zarr(tmp_path / "p.zarr")[...]
    mappings = [(low, high - low) for low, high in np.percentile(raw, [1.0, 99.8], axis=(1, 2)).T]
    recorded = zarr.open_group(str(tmp_path / "p.zarr")).attrs["unetseg"]["grey_mapping"]
    assert recorded == {"offset": [m[0] for m in mappings], "scale": [m[1] for m in mappings]}
    for z in range(2):
        whole = predict_whole_slice(model, raw[z], grey_mapping=mappings[z])
        assert np.abs(probability[z] - whole).max() <= 1e-5
    assert np.abs(probability[0] - probability[1]).max() <= 1e-5


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
    assert probability.compressors[0].cname.value == "lz4"  # PROBABILITY_CODEC
    predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "h.zarr", tile_out=28, block_px=32,
                   compression={"cname": "zstd", "clevel": 3})  # fmt: skip
    half = io.open_zarr(tmp_path / "h.zarr")
    assert (half.compressors[0].cname.value, half.compressors[0].clevel) == ("zstd", 3)
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
    """Record every chunk write of chunking, weight maps and prediction with 4 workers, by
    zarr's store or straight to the chunk's file (`blocks.write_block`)."""
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
    original_write_file = blocks.write_file

    def recording_write_file(path, data):
        writes.append(path)
        return original_write_file(path, data)

    monkeypatch.setattr(LocalStore, "set", recording_set)
    monkeypatch.setattr(blocks, "write_file", recording_write_file)
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


DIHEDRAL = [
    (lambda a, t=turns, f=flip: np.rot90(a[..., ::-1] if f else a, t, axes=(-2, -1)))
    for flip in (False, True)
    for turns in range(4)
]


def test_test_time_augmentation_is_invariant_to_flips_and_turns(model):
    tile = np.random.default_rng(1).random((1, 116, 116)).astype(np.float32)  # 116 -> 28 at depth 3
    averaged = forward_tiles(model, tile, torch.device("cpu"), "fp32", False, tta=True)
    plain = forward_tiles(model, tile, torch.device("cpu"), "fp32", False)
    assert np.abs(averaged - plain).max() > 1e-4  # the network alone is not invariant
    for transform in DIHEDRAL:
        moved = np.ascontiguousarray(transform(tile))
        of_moved = forward_tiles(model, moved, torch.device("cpu"), "fp32", False, tta=True)
        assert np.abs(of_moved - transform(averaged)).max() <= 1e-5


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int16"])
@pytest.mark.parametrize("mapping", ["unit", (1000.5, 250.25)])
def test_integer_tiles_are_normalised_on_the_device_as_on_the_cpu(model, dtype, mapping):
    """Tiles travel to the device as stored and are normalised there: the same probabilities as
    tiles normalised by intensity.normalized first (with the unit mapping of their type, or a
    volume's percentile mapping); float16 out is the float32 result rounded."""
    top = np.iinfo(dtype).max
    tiles = np.random.default_rng(2).integers(0, top, (2, 116, 116), endpoint=True).astype(dtype)
    mapping = unit_mapping(tiles.dtype) if mapping == "unit" else mapping
    cpu = torch.device("cpu")
    scaled_first = forward_tiles(model, normalized(tiles, mapping), cpu, "fp32", False)
    as_stored = forward_tiles(model, tiles, cpu, "fp32", False, grey_mapping=mapping)
    np.testing.assert_array_equal(as_stored, scaled_first)
    as_half = forward_tiles(
        model, tiles, cpu, "fp32", False, out_dtype="float16", grey_mapping=mapping
    )
    assert as_half.dtype == np.float16
    np.testing.assert_array_equal(as_half, scaled_first.astype(np.float16))


def predict_command(model_file, raw, out, *options):
    return [sys.executable, "-m", "unetseg", "predict", str(model_file), str(raw), str(out),
            "--tile-out", "28", "--block-px", "32", "--dtype", "float32", *options]  # fmt: skip


def test_killed_prediction_resumes_where_it_stopped(tmp_path, model_file):
    raw = np.random.default_rng(2).integers(0, 255, (12, 64, 64)).astype(np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    whole = subprocess.run(
        predict_command(model_file, tmp_path / "raw.zarr", tmp_path / "whole.zarr")
    )
    assert whole.returncode == 0

    out = tmp_path / "p.zarr"
    done = tmp_path / "p.zarr.partial/done_chunks"

    def kill_after(chunks: int, *options) -> str:
        process = subprocess.Popen(
            predict_command(model_file, tmp_path / "raw.zarr", out, *options),
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not (done.is_dir() and len(list(done.iterdir())) >= chunks):
            assert process.poll() is None and time.monotonic() < deadline, "never got going"
            time.sleep(0.01)
        process.kill()
        return process.communicate()[1]

    kill_after(2, "--tta")  # other settings: this partial store must not be reused
    log = kill_after(10)
    assert "resuming" not in log
    finished_before = len(list(done.iterdir()))
    assert not out.exists() and 10 <= finished_before < 48  # 12 slices x 4 chunks

    resumed = subprocess.run(
        predict_command(model_file, tmp_path / "raw.zarr", out), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"(\d+) of 48 chunks already done", resumed.stderr)
    assert int(re.search(r"(\d+) of 48 chunks", resumed.stderr)[1]) >= finished_before
    assert np.array_equal(io.open_zarr(out)[...], io.open_zarr(tmp_path / "whole.zarr")[...])
    assert not (tmp_path / "p.zarr.partial").exists()


def test_local_cluster_gives_the_threads_result(tmp_path, model_file):
    raw = np.random.default_rng(3).integers(0, 255, (2, 64, 48)).astype(np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    common = dict(tile_out=28, block_px=32, out_dtype="float32", threads=2, workers=2)
    predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "t.zarr", **common)
    predict_volume(
        model_file, tmp_path / "raw.zarr", tmp_path / "d.zarr", scheduler="distributed", **common
    )
    assert np.array_equal(
        io.open_zarr(tmp_path / "d.zarr")[...], io.open_zarr(tmp_path / "t.zarr")[...]
    )


def test_unknown_scheduler_is_named(tmp_path, model_file):
    raw = np.zeros((1, 32, 32), np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    with pytest.raises(UnetsegError, match="predict.scheduler: 'mpi'"):
        predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "p.zarr", scheduler="mpi")
    assert not list(tmp_path.glob("p.zarr*"))  # refused before anything was written


def test_unknown_compressor_is_named_before_anything_is_written(tmp_path, model_file):
    raw = np.zeros((1, 32, 32), np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    with pytest.raises(UnetsegError, match="predict.compressor: 'foo' is not one of zstd, lz4"):
        predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "p.zarr",
                       compression={"cname": "foo", "clevel": 1})  # fmt: skip
    assert not list(tmp_path.glob("p.zarr*"))
    done = subprocess.run(predict_command(model_file, tmp_path / "raw.zarr", tmp_path / "q.zarr",
                                          "--cname", "foo"), capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and "argument --cname: invalid choice: 'foo'" in done.stderr
    assert not list(tmp_path.glob("q.zarr*"))


def test_uint8_quantised_probabilities_read_back_as_floats(tmp_path, model_file):
    raw = np.random.default_rng(4).integers(0, 255, (2, 64, 48)).astype(np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    common = dict(tile_out=28, block_px=32)
    predict_volume(
        model_file, tmp_path / "raw.zarr", tmp_path / "f.zarr", out_dtype="float32", **common
    )
    predict_volume(
        model_file, tmp_path / "raw.zarr", tmp_path / "q.zarr", out_dtype="uint8", **common
    )
    quantised, exact = io.open_zarr(tmp_path / "q.zarr"), io.open_zarr(tmp_path / "f.zarr")
    assert quantised.dtype == np.float32
    assert np.abs(quantised[...] - exact[...]).max() <= 1 / 510 + 1e-6

    def stored_bytes(store):
        return sum(f.stat().st_size for f in (tmp_path / store / "0/c").rglob("*") if f.is_file())

    assert stored_bytes("q.zarr") < 0.4 * stored_bytes("f.zarr")  # bytes, not floats


# fp32 on CUDA convolves in TF32 by default (10-bit mantissa), hence its tolerance
DEVICE_TOLERANCE = {"fp32": 2e-3, "fp16": 1e-2, "bf16": 3e-2}


@pytest.mark.parametrize(
    "precision, channels_last",
    [(p, True) for p in TEST_PRECISIONS] + ([("fp32", False)] if TEST_DEVICE != "cpu" else []),
)
def test_predict_on_the_test_device_agrees_with_cpu_fp32(tmp_path, model, model_file, precision,
                                                          channels_last):  # fmt: skip
    raw = np.random.default_rng(2).integers(0, 255, (2, 70, 50)).astype(np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    predict_volume(
        model_file, tmp_path / "raw.zarr", tmp_path / "p.zarr", tile_out=28, block_px=32,
        threads=2, batch_size=3, precision=precision, channels_last=channels_last,
        device=TEST_DEVICE, out_dtype="float32",
    )  # fmt: skip
    probability = io.open_zarr(tmp_path / "p.zarr")[...]
    reference = np.stack([predict_whole_slice(model, raw[z]) for z in range(raw.shape[0])])
    difference = np.abs(probability - reference).max()
    assert 0 < difference <= DEVICE_TOLERANCE[precision]  # 0 would mean fp32 on the CPU again


def test_a_compiled_model_predicts_as_the_eager_one(tmp_path, model, model_file):
    """predict_volume's compile_mode (measured by `bench gpu-limits`): graphs captured by
    torch.compile in two Dask threads at once give the eager model's probabilities. On the CPU
    the graphs run on torch's own kernels ("dynamo": no compiler needed); on a GPU (bench
    gpu-check) inductor compiles them."""
    raw = np.random.default_rng(3).integers(0, 255, (2, 70, 50)).astype(np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    mode = "dynamo" if TEST_DEVICE == "cpu" else "default"
    torch._dynamo.utils.counters.clear()
    for name, compile_mode in (("eager", "off"), ("compiled", mode)):
        predict_volume(
            model_file, tmp_path / "raw.zarr", tmp_path / f"{name}.zarr", tile_out=28,
            block_px=32, workers=2, threads=2, batch_size=3, device=TEST_DEVICE,
            out_dtype="float32", compile_mode=compile_mode,
        )  # fmt: skip
    eager, compiled = (
        io.open_zarr(tmp_path / f"{name}.zarr")[...] for name in ("eager", "compiled")
    )
    assert np.abs(compiled - eager).max() <= (1e-6 if TEST_DEVICE == "cpu" else 2e-3)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile


def test_an_unknown_compile_mode_is_refused_before_anything_is_written(tmp_path, model_file):
    raw = np.zeros((1, 40, 40), np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    with pytest.raises(UnetsegError, match="compile: 'fast' is not one of off, default"):
        predict_volume(model_file, tmp_path / "raw.zarr", tmp_path / "p.zarr", tile_out=28,
                       compile_mode="fast")  # fmt: skip
    assert not list(tmp_path.glob("p.zarr*"))
