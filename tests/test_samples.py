"""What training reads (unetseg/samples.py): volumes a window at a time, annotated slices,
reproducible augmented samples, the shared chunk cache, the loader's processes."""

import numpy as np
import pytest
import torch
from conftest import write_tiff

from unetseg import UnetsegError, tiling
from unetseg.augment import AugmentConfig
from unetseg.chunk import chunk_volume
from unetseg.samples import Samples, Volume, load_volume, loader_workers
from unetseg.train import TrainConfig
from unetseg.weights import compute_weights

TINY = dict(depth=2, base_channels=4, tile_out=20)


def sparse_volume(annotated_box):
    """A (3, 64, 80) volume whose weights are 0 except in `annotated_box` of slice 1."""
    rng = np.random.default_rng(0)
    weights = np.zeros((3, 64, 80), np.float32)
    weights[(1, *annotated_box)] = 1.0
    interior = (rng.random((3, 64, 80)) > 0.5).astype(np.uint8)
    return Volume.from_arrays(rng.random((3, 64, 80), dtype=np.float32), interior, weights)


def test_sparse_slices_give_tiles_centred_in_their_annotation():
    volume = sparse_volume((slice(40, 43), slice(60, 70)))
    config = TrainConfig(**TINY, augment=AugmentConfig(elastic=False))
    samples = Samples([volume], tiling.input_size(20, 2), 20, config)
    assert [z for _, z, _ in samples.slices] == [1]  # slices 0 and 2 hold no annotation
    for index in range(30):
        _, _, weight = samples[index]
        assert weight[9:11, 9:11].max() > 0  # centred on an annotated pixel


def test_dense_slices_are_sampled_as_before():
    """Fully annotated slices draw the same random numbers as before sparse annotation existed:
    a slice, then a uniform centre inside augmented_sample."""
    from unetseg.augment import augmented_sample

    volume = sparse_volume((slice(None), slice(None)))
    volume.weights[:] = 1.0
    config = TrainConfig(**TINY)
    tile_in = tiling.input_size(20, 2)
    samples = Samples([volume], tile_in, 20, config)
    for index in range(3):
        rng = np.random.default_rng([config.seed, index])
        z = rng.integers(3)
        image, *_ = augmented_sample(rng, volume.raw[z], volume.labels[z], volume.weights[z],
                                     tile_in, 20, config.augment)  # fmt: skip
        assert np.array_equal(samples[index][0][0].numpy(), image)


def test_volumes_sharing_a_raw_store_keep_their_own_labels(tmp_path, demo_arrays):
    """The chunk cache names chunks by their store: two label stores of one raw store (two
    annotators, say) are not mistaken for each other."""
    raw, label_volume = demo_arrays
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr")
    for name, values in (("a", label_volume), ("b", 255 - label_volume)):
        chunk_volume(write_tiff(tmp_path / f"{name}.tif", values), tmp_path / f"{name}.zarr",
                     is_labels=True)  # fmt: skip
    first, second = (load_volume(tmp_path / "raw.zarr", tmp_path / f"{n}.zarr") for n in "ab")
    assert np.array_equal(first.interior(0)[:, :], label_volume[0] > 0)
    assert np.array_equal(second.interior(0)[:, :], label_volume[0] == 0)
    assert np.array_equal(first.image(0)[:, :], second.image(0)[:, :])


def test_sampling_processes_share_the_chunk_cache(monkeypatch):
    """Each of n DataLoader workers keeps 1/n of the decoded-chunk budget."""
    from unetseg import samples as samples_module

    class CacheBudget(torch.utils.data.Dataset):
        def __init__(self, *args):
            pass

        def __getitem__(self, index):
            return torch.tensor(samples_module.SHARED_CHUNKS.max_bytes)

    monkeypatch.setattr(samples_module, "Samples", CacheBudget)
    for workers, expected in ((2, samples_module.CHUNK_CACHE_BYTES // 2),
                              (0, samples_module.CHUNK_CACHE_BYTES)):  # fmt: skip
        config = TrainConfig(**TINY, workers=workers)
        loader = samples_module.sample_loader([], 92, config, torch.device("cpu"), 0)
        budgets = [batch.item() for batch, _ in zip(loader, range(4), strict=False)]
        assert budgets == [expected] * 4


def test_no_annotated_pixel_is_refused():
    volume = sparse_volume((slice(0), slice(0)))
    with pytest.raises(UnetsegError, match="no pixel of the train volumes is annotated"):
        Samples([volume], tiling.input_size(20, 2), 20, TrainConfig(**TINY))


def test_only_annotated_slices_of_a_sparse_volume_are_sampled(tmp_path, demo_arrays, caplog):
    raw, label_volume = demo_arrays
    sparse = np.full(label_volume.shape, 9, np.uint8)
    sparse[1] = label_volume[1] > 0
    sparse[3, 10:30, 10:30] = label_volume[3, 10:30, 10:30] > 0
    stores = [tmp_path / f"{name}.zarr" for name in ("raw", "labels", "weights")]
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), stores[0], chunks=(2, 64, 64))
    chunk_volume(write_tiff(tmp_path / "labels.tif", sparse), stores[1], chunks=(2, 64, 64),
                 is_labels=True, ignore_label=9)  # fmt: skip
    compute_weights(stores[1], stores[2])
    volume = load_volume(*stores, config=TrainConfig(normalize="unit"))
    with caplog.at_level("INFO"):
        samples = Samples([volume], tiling.input_size(20, 2), 20, TrainConfig(**TINY))
    assert "2 of 4 slices hold annotated pixels; only these are sampled" in caplog.text
    assert [z for _, z, _ in samples.slices] == [1, 3]
    assert samples.slices[0][2] is None  # slice 1: annotated everywhere, sampled uniformly
    assert np.array_equal(volume.image(3).whole(), raw[3] / np.float32(255))
    assert np.array_equal(volume.interior(3)[10:30, 10:30], label_volume[3, 10:30, 10:30] > 0)
    assert not volume.interior(3)[40:, :].any()  # unannotated: not interior


def test_loader_workers_auto_leave_the_job_one_core():
    assert [loader_workers("auto", n) for n in (1, 2, 16)] == [0, 1, 15]
    assert loader_workers(3, 16) == 3
    with pytest.raises(UnetsegError, match="train.workers: 'many'"):
        loader_workers("many", 2)
