import numpy as np
from conftest import write_tiff
from unetseg import io
from unetseg.chunk import chunk_volume
from unetseg.segment import segment_slice, segment_volume


def test_threshold_and_4_connectivity():
    probability = np.zeros((5, 5), np.float32)
    probability[0, 0] = probability[1, 1] = 0.9  # diagonal neighbours: two cells
    probability[3:, 3:] = 0.6
    probability[4, 0] = 0.5  # not above 0.5
    ids, count = segment_slice(probability, 0.5)
    assert count == 3 and ids.dtype == np.uint32
    assert ids[0, 0] != ids[1, 1] and ids[4, 0] == 0
    assert len(np.unique(ids[3:, 3:])) == 1


def test_ids_are_unique_across_slices(tmp_path):
    probability = np.zeros((2, 6, 6), np.float32)
    probability[:, :2, :2] = probability[:, 4:, 4:] = 1.0
    chunk_volume(write_tiff(tmp_path / "p.tif", probability), tmp_path / "p.zarr")
    assert segment_volume(tmp_path / "p.zarr", tmp_path / "s.zarr", 0.5) == 4
    ids = io.open_zarr(tmp_path / "s.zarr")[...]
    assert sorted(np.unique(ids)) == [0, 1, 2, 3, 4]
    assert set(np.unique(ids[1])) == {0, 3, 4}
