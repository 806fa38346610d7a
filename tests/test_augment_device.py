"""The augmentation computed by torch (augment_device.py, the path a GPU takes), run here on the
CPU against the numpy/scipy path on the same random draws: image and weights within 1e-5,
labels exactly, for tiles inside slices, over their borders and larger than them. On a GPU
machine (UNETSEG_TEST_DEVICE=cuda, bench/gpu-check.sh) the torch path runs on the GPU."""

import numpy as np
import pytest
import torch
from conftest import TEST_DEVICE

from unetseg import augment_device
from unetseg.augment import AugmentConfig, augmented_sample, draw


class CountingPlane:
    """A 2D array that records the windows read from it."""

    def __init__(self, array):
        self.array, self.shape, self.reads = array, array.shape, []

    def __getitem__(self, window):
        part = self.array[window]
        self.reads.append(part.size)
        return part


@pytest.mark.parametrize("shape", [(300, 260), (40, 300), (23, 17), (1, 90)])
@pytest.mark.parametrize("config", [AugmentConfig(), AugmentConfig(elastic_sigma_px=25.0),
                                    AugmentConfig(rotate=False, elastic=False, grey_value=False)])  # fmt: skip
def test_the_device_path_makes_the_cpu_paths_sample(shape, config):
    source = np.random.default_rng(1)
    image = source.random(shape, dtype=np.float32)
    interior = (source.random(shape) > 0.5).astype(np.uint8)
    weights = source.random(shape, dtype=np.float32) * 10
    device = torch.device(TEST_DEVICE)
    for seed in range(12):
        expected = augmented_sample(
            np.random.default_rng(seed), image, interior, weights, 92, 52, config
        )
        choice = draw(np.random.default_rng(seed), shape, config)
        window = augment_device.read_window(choice, 92, image, interior, weights)
        tile, target, weight = (
            tensor.cpu() for tensor in augment_device.augmented_on(window, 92, 52, device)
        )
        assert tile.shape == (1, 92, 92) and tile.dtype == torch.float32
        assert np.abs(tile[0].numpy() - expected[0]).max() <= 1e-5, (shape, seed)
        assert np.array_equal(target.numpy(), expected[1]), (shape, seed)
        assert target.dtype == torch.int64
        assert np.abs(weight.numpy() - expected[2]).max() <= 1e-5 * 10, (shape, seed)


def test_loaders_read_a_window_not_the_slice():
    image = np.random.default_rng(0).random((2000, 2000), dtype=np.float32)
    planes = [CountingPlane(a) for a in (image, (image > 0.5).astype(np.uint8), image)]
    for seed in range(5):
        choice = draw(np.random.default_rng(seed), image.shape, AugmentConfig(), (1000.0, 1000.0))
        augment_device.read_window(choice, 92, *planes)
    # a 92-px tile turned and deformed by 10-px grid displacements: under 250 px a side
    assert max(planes[0].reads) < 250**2


def test_a_batch_stacks_its_samples():
    image = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    windows = [augment_device.read_window(draw(np.random.default_rng(s), image.shape, AugmentConfig()),
                                          60, image, (image > 0.5).astype(np.uint8), image)
               for s in range(3)]  # fmt: skip
    images, targets, weights = augment_device.augmented_batch(windows, 60, 20, torch.device("cpu"))
    assert images.shape == (3, 1, 60, 60) and targets.shape == weights.shape == (3, 20, 20)


def test_the_loader_sends_the_windows_of_the_samples_it_would_make():
    """Samples with windows_only: the same draws and windows, augmented by torch, give the CPU
    loader's samples (here on the CPU, as a GPU would)."""
    from unetseg import samples, train

    source = np.random.default_rng(3)
    image = source.random((2, 120, 100), dtype=np.float32)
    interior = (source.random((2, 120, 100)) > 0.5).astype(np.uint8)
    weights = source.random((2, 120, 100), dtype=np.float32)
    volume = samples.Volume.from_arrays(image, interior, weights)
    config = train.TrainConfig(depth=2, tile_out=20)
    on_cpu = samples.Samples([volume], 60, 20, config)
    windows = samples.Samples([volume], 60, 20, config, windows_only=True)
    for index in range(6):
        expected = on_cpu[index]
        made = augment_device.augmented_batch([windows[index]], 60, 20, torch.device("cpu"))
        assert (made[0][0] - expected[0]).abs().max() <= 1e-5
        assert torch.equal(made[1][0], expected[1])
        assert (made[2][0] - expected[2]).abs().max() <= 1e-5


def test_augment_device_cuda_needs_training_on_cuda():
    from unetseg.errors import UnetsegError
    from unetseg.samples import augments_on_device

    cpu = torch.device("cpu")
    assert not augments_on_device("cpu", cpu) and not augments_on_device("auto", cpu)
    with pytest.raises(
        UnetsegError, match="train.augment_device: 'cuda' needs training on a CUDA device"
    ):
        augments_on_device("cuda", cpu)


def test_the_gpu_benchmark_of_augmentation_runs_here_on_the_cpu():
    """bench gpu's gpu_augment_vs_cpu_loader, tried on the CPU with small tiles before GPU
    minutes are spent on it."""
    from bench.gpu import augment_rates

    rates = augment_rates(
        torch.device("cpu"), samples=6, tile_out=20, depth=2, size_px=96, workers=2
    )
    assert rates["cpu_loader"] > 0 and rates["device"] > 0
