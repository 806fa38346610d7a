import numpy as np
import pytest

from unetseg import UnetsegError, tiling


def test_paper_tile_sizes():
    assert tiling.output_size(572, 4) == 388
    assert tiling.input_size(388, 4) == 572
    assert tiling.context_px(4) == 92


def test_valid_sizes_of_depth_4_are_16k_minus_124():
    valid = [o for o in range(1, 600) if tiling.input_size(o, 4) is not None]
    assert valid == [16 * k - 124 for k in range(8, 46)]
    assert all(tiling.input_size(o, 4) == o + 184 for o in valid)


def test_odd_pooling_input_is_invalid():
    assert tiling.output_size(573, 4) is None
    assert tiling.output_size(570, 4) is None


def test_invalid_tile_size_names_nearest_valid():
    with pytest.raises(UnetsegError, match=r"train.tile_out: 390 .* nearest valid: 388 or 404"):
        tiling.check_output_size(390, 4, "train.tile_out")
    assert tiling.check_output_size(388, 4) == 388


def test_tile_smaller_than_grid_is_rejected():
    with pytest.raises(UnetsegError, match="nearest valid: 20"):
        tiling.check_output_size(4, 4)


@pytest.mark.parametrize("length, pad", [(5, 3), (5, 13), (1, 4), (2, 9), (7, 0)])
def test_reflect_indices_equal_numpy_reflect(length, pad):
    array = np.arange(length)
    expected = (
        np.pad(array, (pad, pad + 2), mode="reflect") if length > 1 else np.zeros(2 * pad + 3)
    )
    assert np.array_equal(array[tiling.reflect_indices(-pad, length + pad + 2, length)], expected)


def test_tile_origins_are_on_grid_and_cover():
    origins = tiling.tile_origins(0, 1000, 388, 4)
    assert origins == [0, 384, 768]
    assert all(o % 16 == 0 for o in origins)
    assert origins[-1] + 388 >= 1000
    assert tiling.tile_origins(410, 900, 388, 4) == [400, 784]  # from the grid point below 410
    # their input: 92 px of context before the first tile, 572 - 92 px after the last origin
    assert tiling.input_span([400, 784], 388, 4) == (308, 1264)


@pytest.mark.parametrize(
    ("size", "block_px", "cost"),
    [
        ((4096, 4096), 512, (16 / 11) ** 2),  # 2 x 2 tiles for each 512-px block: 16 across
        ((4096, 4096), 768, 1.0),  # a multiple of the stride (384): the fewest, 11 across
        ((4096, 4096), 1024, (12 / 11) ** 2),
        ((512, 512), 512, 1.0),  # a block the size of the slice is never worse
        ((300, 5000), 768, 1.0),
    ],
)
def test_blocking_cost_counts_the_tiles_that_hang_over_blocks(size, block_px, cost):
    assert tiling.tile_stride(388, 4) == 384
    assert tiling.blocking_cost(size, block_px, 388, 4) == pytest.approx(cost)
