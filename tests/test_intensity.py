import numpy as np
import pytest
import zarr

from unetseg import UnetsegError
from unetseg.intensity import (
    describe,
    normalized,
    sampled_values,
    slice_mappings,
    unit_mapping,
    volume_mapping,
)


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [("uint8", 255.0), ("uint16", 65535.0), ("int16", 32767.0), ("float32", 1.0)],
)
def test_the_unit_mapping_is_the_releases_im2double(dtype, scale):
    assert unit_mapping(np.dtype(dtype)) == (0.0, scale)


def test_percentiles_of_a_small_volume_are_those_of_all_its_values():
    volume = np.random.default_rng(0).integers(0, 4096, (3, 40, 50)).astype(np.uint16)
    low, high = np.percentile(volume, [2.0, 98.0])
    assert volume_mapping(volume, "percentile", (2.0, 98.0)) == (low, high - low)
    assert volume_mapping(volume, "unit") == (0.0, 65535.0)


def test_large_volumes_are_sampled_from_evenly_spread_chunks():
    """16 chunks of 64 px, each filled with its raster index; a budget of 256 px takes the
    centres of 4 equal strata: chunks 2, 6, 10 and 14, whole."""
    array = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(4, 16, 16), chunks=(1, 8, 8), dtype="uint8"
    )
    array[...] = np.arange(16, dtype=np.uint8).reshape(4, 2, 2).repeat(8, 1).repeat(8, 2)
    values = sampled_values(array, max_px=256)
    assert values.size == 256
    assert sorted(set(values.tolist())) == [2, 6, 10, 14]
    assert all((values == v).sum() == 64 for v in (2, 6, 10, 14))


def test_chunks_larger_than_the_volume_count_as_its_size():
    array = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(1, 30, 40), chunks=(1, 4096, 4096), dtype="uint16"
    )
    array[...] = np.arange(1200, dtype=np.uint16).reshape(1, 30, 40)
    np.testing.assert_array_equal(np.sort(sampled_values(array, max_px=1200)), np.arange(1200))


def test_one_chunk_over_the_budget_is_thinned():
    array = np.arange(1024, dtype=np.float32).reshape(1, 32, 32)
    values = sampled_values(array, max_px=100)  # stride ceil(1024 / 100) = 11
    np.testing.assert_array_equal(values, np.arange(0, 1024, 11, dtype=np.float32))


def test_a_constant_volume_maps_to_zero():
    volume = np.full((2, 8, 8), 700, np.uint16)
    assert volume_mapping(volume, "percentile") == (700.0, 1.0)
    assert not normalized(volume, volume_mapping(volume, "percentile")).any()


def test_normalized_is_offset_then_scale_in_float32():
    values = np.array([100, 1100, 4095], np.uint16)
    out = normalized(values, (100.0, 1000.0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.float32([0.0, 1.0, 3.995]))


@pytest.mark.parametrize("percentiles", [(50.0, 50.0), (99.0, 1.0), (-1.0, 99.0), (1.0, 101.0)])
def test_bad_percentiles_are_refused_by_name(percentiles):
    with pytest.raises(
        UnetsegError, match=r"^train\.normalize_percentiles: .* 0 <= low < high <= 100"
    ):
        volume_mapping(np.zeros((1, 4, 4)), "percentile", percentiles)


def test_an_unknown_method_is_refused_by_name():
    with pytest.raises(
        UnetsegError, match=r"^train\.normalize: 'zscore' is not one of unit, percentile"
    ):
        volume_mapping(np.zeros((1, 4, 4)), "zscore")


def test_per_slice_percentiles_are_each_slices_own():
    """Slices of one image in three grey ranges (x, 2x + 50, blank): each slice's percentiles,
    so the first two normalise to the same input, and the blank one to 0."""
    image = np.random.default_rng(1).integers(0, 1000, (30, 40)).astype(np.uint16)
    volume = np.stack([image, image * 2 + 50, np.full_like(image, 7)])
    mappings = slice_mappings(volume, "percentile_per_slice", (2.0, 98.0))
    for z in range(2):
        low, high = np.percentile(volume[z], [2.0, 98.0])
        assert mappings[z] == (low, high - low)
    assert mappings[2] == (7.0, 1.0)
    np.testing.assert_allclose(
        normalized(volume[0], mappings[0]), normalized(volume[1], mappings[1]), atol=1e-6
    )
    assert not normalized(volume[2], mappings[2]).any()
    assert slice_mappings(volume, "percentile") == [volume_mapping(volume, "percentile")] * 3
    assert "per slice" in describe(mappings, "percentile_per_slice")


def test_a_slice_is_sampled_from_its_own_values_in_chunks_several_slices_deep():
    """Chunks 2 slices deep, each slice filled with its index: slice z's sample is z only, and
    at most max_px values, from evenly spread chunks of that slice."""
    array = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(4, 64, 64), chunks=(2, 16, 16), dtype="uint8"
    )
    array[...] = np.arange(4, dtype=np.uint8).repeat(64 * 64).reshape(4, 64, 64)
    for z in range(4):
        values = sampled_values(array, max_px=1024, z=z)
        assert values.size == 1024 and set(values.tolist()) == {z}


def test_per_slice_mapping_is_refused_where_one_mapping_is_needed():
    with pytest.raises(ValueError, match="slice_mappings"):
        volume_mapping(np.zeros((1, 4, 4), np.uint8), "percentile_per_slice")
