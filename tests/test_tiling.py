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
