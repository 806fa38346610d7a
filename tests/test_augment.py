import numpy as np
import torch

from unetseg.augment import AugmentConfig, augmented_sample, bicubic_matrix, sample_coordinates

OFF = AugmentConfig(elastic=False, rotate=False, flip=False, grey_value=False)


def test_bicubic_upsampling_equals_torch_bicubic():
    grid = np.random.default_rng(0).normal(size=(2, 3, 3))
    matrix = bicubic_matrix(3, 41)
    ours = np.einsum("ij,cjk,lk->cil", matrix, grid, matrix)
    reference = torch.nn.functional.interpolate(
        torch.tensor(grid)[None], size=(41, 41), mode="bicubic", align_corners=True
    )[0].numpy()
    assert np.abs(ours - reference).max() < 1e-12


def test_elastic_displacement_std_is_paper_sigma():
    rng = np.random.default_rng(0)
    config = AugmentConfig(rotate=False, flip=False)
    corners = []
    base = sample_coordinates(rng, 65, (100.0, 100.0), OFF)
    for _ in range(400):
        corners.append((sample_coordinates(rng, 65, (100.0, 100.0), config) - base)[:, 0, 0])
    # At the grid's corner nodes the displacement is the drawn vector itself: std 10 px.
    assert abs(np.std(corners) - 10.0) < 1.0


def test_without_augmentation_a_sample_is_a_plain_crop():
    rng = np.random.default_rng(3)
    image = np.random.default_rng(1).random((50, 60)).astype(np.float32)
    interior = (image > 0.5).astype(np.uint8)
    tile, target, weight = augmented_sample(rng, image, interior, image, 20, 8, OFF)
    rng = np.random.default_rng(3)
    cy, cx = rng.uniform(0, 49), rng.uniform(0, 59)
    # Half-pixel centres interpolate; compare against the same bilinear sample of the grid.
    ys, xs = np.mgrid[:20, :20] - 9.5
    from scipy import ndimage

    expected = ndimage.map_coordinates(image, [ys + cy, xs + cx], order=1, mode="mirror")
    assert np.allclose(tile, expected, atol=1e-6)
    assert set(np.unique(target)) <= {0, 1}
    assert np.allclose(weight, expected[6:14, 6:14], atol=1e-6)


def test_labels_and_weights_deform_with_the_image():
    rng = np.random.default_rng(0)
    image = np.zeros((80, 80), np.float32)
    image[:, 40:] = 1
    interior = (image > 0).astype(np.uint8)
    config = AugmentConfig(grey_value=False)
    tile, target, weight = augmented_sample(rng, image, interior, image, 44, 20, config)
    inner = tile[12:32, 12:32]
    # Where the deformed image is clearly one side, the nearest-sampled label agrees.
    assert np.all(target[inner > 0.99] == 1) and np.all(target[inner < 0.01] == 0)
    assert np.allclose(weight, inner, atol=1e-6)


def test_samples_are_reproducible_by_seed():
    image = np.random.default_rng(1).random((40, 40)).astype(np.float32)
    interior = (image > 0.5).astype(np.uint8)
    a = augmented_sample(np.random.default_rng(7), image, interior, image, 30, 10, AugmentConfig())
    b = augmented_sample(np.random.default_rng(7), image, interior, image, 30, 10, AugmentConfig())
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def whole_slice_sample(rng, image, interior, weights, tile_in, tile_out, config):
    """The sample as drawn before windows: scipy resamples the whole slice in 'mirror' mode."""
    from scipy import ndimage

    from unetseg.augment import coordinates_of, crop_center, draw, grey_value

    choice = draw(rng, image.shape, config)
    coordinates = coordinates_of(choice, tile_in)
    tile = ndimage.map_coordinates(image, coordinates, order=1, mode="mirror").astype(np.float32)
    inner = crop_center(coordinates, tile_out)
    target = ndimage.map_coordinates(interior, inner, order=0, mode="mirror")
    weight = ndimage.map_coordinates(weights, inner, order=1, mode="mirror").astype(np.float32)
    return grey_value(tile, choice.contrast, choice.brightness), target.astype(np.int64), weight


class CountingPlane:
    """A 2D array that records the largest window read from it."""

    def __init__(self, array):
        self.array, self.shape, self.largest = array, array.shape, 0

    def __getitem__(self, window):
        part = self.array[window]
        self.largest = max(self.largest, part.size)
        return part


def test_a_sample_from_the_window_it_reaches_equals_one_from_the_whole_slice():
    """Mirrored coordinates and a window read give scipy's 'mirror' resampling of the whole
    slice: tiles far inside, at the borders and larger than the slice (folded twice)."""
    config = AugmentConfig()
    source = np.random.default_rng(1)
    for height, width in ((300, 260), (40, 300), (23, 17), (1, 90)):
        image = source.random((height, width), dtype=np.float32)
        interior = (source.random((height, width)) > 0.5).astype(np.uint8)
        weights = source.random((height, width), dtype=np.float32)
        planes = [CountingPlane(a) for a in (image, interior, weights)]
        for seed in range(20):
            ours = augmented_sample(np.random.default_rng(seed), *planes, 92, 52, config)
            expected = whole_slice_sample(np.random.default_rng(seed), image, interior, weights,
                                          92, 52, config)  # fmt: skip
            for got, want in zip(ours, expected, strict=True):
                assert np.array_equal(got, want), (height, width, seed)
        if height == 300:  # a 92-px tile, turned and deformed, reaches about 140 px a side
            assert planes[0].largest < 160**2
