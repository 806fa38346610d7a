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
