import numpy as np
import pytest
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


def test_watershed_splits_cells_joined_by_a_faint_membrane():
    probability = np.full((9, 20), 0.9, np.float32)
    probability[:, 9:11] = 0.6  # a faint membrane, above the 0.5 threshold
    _, plain = segment_slice(probability, 0.5)
    ids, split = segment_slice(probability, 0.5, seed_threshold=0.8)
    assert plain == 1 and split == 2
    assert len(np.unique(ids[:, :9])) == 1 and ids[0, 0] != ids[0, 19]


def test_auto_threshold_pools_validation_counts(tmp_path):
    import json

    from unetseg.evaluate import evaluate_arrays
    from unetseg.segment import best_threshold

    truth = np.zeros((8, 7), np.uint8)
    truth[:, :3] = truth[:, 4:] = 255
    probability = (truth > 0).astype(np.float32)
    probability[2:5, 3] = 0.55  # merges the cells below t = 0.6 (METRICS.md E7)
    (tmp_path / "m.json").write_text(json.dumps(evaluate_arrays(truth, probability)))
    assert best_threshold([tmp_path / "m.json"]) == 0.6


@pytest.mark.parametrize(
    ("chunk_px", "min_size_px", "workers"),
    [(5, 0, 1), (16, 0, 2), (64, 0, 1), (5, 30, 2), (16, 30, 1)],
)
def test_labelling_chunk_by_chunk_equals_labelling_the_whole_slice(
    tmp_path, chunk_px, min_size_px, workers
):
    """Components that wind through many chunks (and join only in a later chunk) get the ids
    that ndimage.label gives on the whole slice, numbered from first_id on; so does a slice of
    one chunk and slices whose size is not a multiple of the chunk. Cells smaller than
    min_size_px are dropped by their whole size, not by their pieces in each chunk (a 5-px
    chunk holds 25 px, so every cell kept at 30 px spans chunks), as on the whole slice."""
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential

    from unetseg.labels import FOUR_CONNECTED

    field = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal((3, 61, 45)), 2)
    probability = (1 / (1 + np.exp(-field / field.std()))).astype(np.float16)
    probability[2, 20, :] = probability[2, :, 30] = 0.0  # a U joined at its bottom only
    probability[2, 21:, 10:12] = probability[2, 50:52, 10:30] = probability[2, 21:52, 28:30] = 1
    store = io.create_ome_zarr(tmp_path / "p.zarr", probability.shape, np.float16,
                               (1, chunk_px, chunk_px), (1, 1, 1))  # fmt: skip
    store[...] = probability
    segment_volume(tmp_path / "p.zarr", tmp_path / "s.zarr", 0.6, None, min_size_px, workers)
    ids = io.open_zarr(tmp_path / "s.zarr")[...]
    first_id = dropped = 0
    for z in range(3):
        expected, _ = ndimage.label(probability[z].astype(np.float64) > 0.6, FOUR_CONNECTED)
        small = np.bincount(expected.ravel()) < min_size_px
        small[0] = False
        dropped += int(small.sum())
        expected = relabel_sequential(np.where(small[expected], 0, expected))[0]
        assert np.array_equal(segment_slice(probability[z], 0.6, min_size_px=min_size_px)[0],
                              expected), z  # fmt: skip
        expected[expected > 0] += first_id
        assert np.array_equal(ids[z], expected), z
        first_id = max(first_id, int(expected.max()))
    assert first_id > 20 if min_size_px == 0 else (first_id > 5 and dropped > 5)


def quantised_cells(shape, seed=1):
    """Smooth probabilities in steps of 0.05, as float16: many equal values, so that the order in
    which the watershed floods pixels of equal height decides which seed takes a pixel."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 1.5)
    return (np.round(20 / (1 + np.exp(-2 * field / field.std()))) / 20).astype(np.float16)


@pytest.mark.parametrize(
    ("chunk_px", "min_size_px", "workers"),
    [(5, 0, 2), (16, 0, 1), (64, 0, 2), (5, 30, 1), (16, 30, 2)],
)
def test_seeded_watershed_by_windows_equals_the_whole_slice(
    tmp_path, chunk_px, min_size_px, workers
):
    """The seeded watershed, run on windows of whole cells, gives segment_slice's ids on the
    whole slice, numbered on across slices: cells wider than many chunks with several seeds,
    cells without a seed, ties everywhere (scikit-image's own order of equal heights depends on
    the image, and fails this test)."""
    probability = quantised_cells((3, 97, 83))
    store = io.create_ome_zarr(tmp_path / "p.zarr", probability.shape, np.float16,
                               (1, chunk_px, chunk_px), (1, 1, 1))  # fmt: skip
    store[...] = probability
    count = segment_volume(tmp_path / "p.zarr", tmp_path / "s.zarr", 0.5, 0.8, min_size_px, workers)
    ids = io.open_zarr(tmp_path / "s.zarr")[...]
    first_id = 0
    for z in range(3):
        expected, found = segment_slice(probability[z], 0.5, 0.8, min_size_px)
        assert found > segment_slice(probability[z], 0.5, min_size_px=min_size_px)[1]  # splits
        expected = expected.astype(np.int64)
        expected[expected > 0] += first_id
        assert np.array_equal(ids[z], expected), z
        first_id += found
    assert count == first_id and not any(tmp_path.glob(".s.zarr.scratch-*"))


def test_watershed_of_a_cell_does_not_depend_on_the_rest_of_the_slice():
    """Each cell (component of the mask) flooded in its own bounding box gets the regions it
    gets in the whole slice: what lets the segment stage work window by window."""
    from scipy import ndimage

    from unetseg.labels import FOUR_CONNECTED
    from unetseg.segment import as_float64, seeded_watershed

    values = as_float64(quantised_cells((120, 110), seed=3))
    interior = values > 0.5
    seeds, _ = ndimage.label(values > 0.8, FOUR_CONNECTED)
    whole = seeded_watershed(values, interior, seeds)
    cells, _ = ndimage.label(interior, FOUR_CONNECTED)
    contested = 0
    for cell, box in enumerate(ndimage.find_objects(cells), start=1):
        inside = cells[box] == cell
        alone = seeded_watershed(values[box], inside, np.where(inside, seeds[box], 0))
        assert np.array_equal(alone[inside], whole[box][inside]), cell
        contested += len(np.unique(seeds[box][inside])) > 2  # the background and 2+ seeds
    assert contested >= 5


def test_watershed_floods_as_scikit_image_does_where_no_two_seed_pixels_tie():
    """The flooding heights change only the order of seed pixels of equal probability: with
    every seed pixel's value distinct, the regions are scikit-image's own, plateaus of equal
    values among the other pixels included (shared out breadth first, not in raster order)."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    from unetseg.labels import FOUR_CONNECTED
    from unetseg.segment import as_float64, seeded_watershed

    values = as_float64(quantised_cells((90, 100), seed=5))
    is_seed = values > 0.8
    values[is_seed] += np.arange(is_seed.sum()) * 1e-9  # distinct, in no particular order
    values[is_seed] = np.random.default_rng(0).permutation(values[is_seed])
    seeds, _ = ndimage.label(is_seed, FOUR_CONNECTED)
    interior = values > 0.5
    expected = watershed(1.0 - values, seeds, connectivity=1, mask=interior)
    assert len(np.unique(values[interior & ~is_seed])) < 12  # plateaus
    assert np.array_equal(seeded_watershed(values, interior, seeds), expected)


def test_a_seed_threshold_below_the_threshold_seeds_each_cell_whole(tmp_path):
    probability = quantised_cells((2, 40, 50), seed=4)
    store = io.create_ome_zarr(tmp_path / "p.zarr", probability.shape, np.float16, (1, 16, 16),
                               (1, 1, 1))  # fmt: skip
    store[...] = probability
    segment_volume(tmp_path / "p.zarr", tmp_path / "seeded.zarr", 0.6, 0.3)
    segment_volume(tmp_path / "p.zarr", tmp_path / "plain.zarr", 0.6)
    seeded = io.open_zarr(tmp_path / "seeded.zarr")[...]
    assert seeded.max() > 4 and np.array_equal(seeded, io.open_zarr(tmp_path / "plain.zarr")[...])


def test_seeded_watershed_of_empty_slices_and_of_one_cell_as_wide_as_the_slice(
    tmp_path, monkeypatch, caplog
):
    """No cells; one unseeded cell filling the slice; one cell filling the slice with two seeds
    (its window is the whole slice, which is reported as large): each as segment_slice gives
    it, plateaus shared out breadth first (each seed takes the corner nearer to it)."""
    import logging

    from unetseg import segment

    monkeypatch.setattr(segment, "LARGE_WINDOW_PX", 1000)
    probability = np.zeros((3, 40, 37), np.float16)
    probability[1:] = 0.7
    probability[2, 3:9, 4:10] = probability[2, 30:36, 20:33] = 0.95
    store = io.create_ome_zarr(tmp_path / "p.zarr", probability.shape, np.float16, (1, 16, 16),
                               (1, 1, 1))  # fmt: skip
    store[...] = probability
    with caplog.at_level(logging.WARNING):
        assert segment_volume(tmp_path / "p.zarr", tmp_path / "s.zarr", 0.5, 0.8, 0, 2) == 3
    assert [r.getMessage()[:56] for r in caplog.records] == [
        "slice 2: the seeded watershed floods a window of 40 x 37"
    ]
    ids = io.open_zarr(tmp_path / "s.zarr")[...]
    assert not ids[0].any() and np.all(ids[1] == 1)
    assert np.array_equal(ids[2], segment_slice(probability[2], 0.5, 0.8)[0] + 1)
    assert set(np.unique(ids[2])) == {2, 3} and ids[2, 0, 0] == 2 and ids[2, -1, -1] == 3


def test_a_rerun_removes_what_a_killed_segment_left(tmp_path):
    """SIGKILL skips the clean-up of the temporary store and the scratch stores; the next write
    of the same output removes them, and leaves other outputs' alone."""
    probability = quantised_cells((1, 30, 30))
    store = io.create_ome_zarr(tmp_path / "p.zarr", probability.shape, np.float16, (1, 16, 16),
                               (1, 1, 1))  # fmt: skip
    store[...] = probability
    left = [tmp_path / ".s.zarr.tmp-0badc0de", tmp_path / ".s.zarr.scratch-0badc0de"]
    other = tmp_path / ".p.zarr.tmp-0badc0de"
    for path in [*left, other]:
        (path / "cells").mkdir(parents=True)
    segment_volume(tmp_path / "p.zarr", tmp_path / "s.zarr", 0.5, 0.8)
    assert not any(path.exists() for path in left) and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".p.zarr.tmp-0badc0de",
        "p.zarr",
        "s.zarr",
    ]


def touching_discs(shape, seed=2, radius_px=(6, 11)):
    """Probabilities of discs (nuclei) placed at random, many touching or overlapping, with a
    soft edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inside = np.zeros(shape, np.float32)
    for _ in range(shape[0] * shape[1] // 250):
        y, x, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(*radius_px)
        inside = np.maximum(inside, np.clip(r - np.hypot(yy - y, xx - x), 0, 1))
    return inside


def test_the_distance_split_separates_two_touching_discs_and_keeps_one_whole():
    yy, xx = np.mgrid[:30, :50]
    two = ((np.hypot(yy - 15, xx - 15) < 10) | (np.hypot(yy - 15, xx - 32) < 10)).astype(np.float32)
    _, plain = segment_slice(two, 0.5)
    ids, split = segment_slice(two, 0.5, split_h=2.0)
    assert plain == 1 and split == 2
    assert ids[15, 10] != ids[15, 37] and ids[15, 10] > 0 and ids[15, 37] > 0
    one = (np.hypot(yy - 15, xx - 25) < 10).astype(np.float32)
    assert segment_slice(one, 0.5, split_h=2.0)[1] == 1
    # A lower h splits at shallower necks: never fewer parts.
    discs = touching_discs((80, 80))
    counts = [segment_slice(discs, 0.5, split_h=h)[1] for h in (4.0, 2.0, 0.5)]
    assert counts == sorted(counts) and counts[-1] > segment_slice(discs, 0.5)[1]


@pytest.mark.parametrize(("chunk_px", "min_size_px", "workers"), [(7, 0, 2), (32, 15, 1)])
def test_the_distance_split_by_windows_equals_the_whole_slice(
    tmp_path, chunk_px, min_size_px, workers
):
    probability = np.stack([touching_discs((70, 90), seed) for seed in (3, 4)])
    store = io.create_ome_zarr(tmp_path / "p.zarr", probability.shape, np.float32,
                               (1, chunk_px, chunk_px), (1, 1, 1))  # fmt: skip
    store[...] = probability
    count = segment_volume(tmp_path / "p.zarr", tmp_path / "s.zarr", 0.5, None, min_size_px,
                           workers, split_h=1.0)  # fmt: skip
    ids = io.open_zarr(tmp_path / "s.zarr")[...]
    first_id = 0
    for z in range(2):
        expected, found = segment_slice(probability[z], 0.5, None, min_size_px, split_h=1.0)
        expected = expected.astype(np.int64)
        expected[expected > 0] += first_id
        assert np.array_equal(ids[z], expected), z
        first_id += found
    assert count == first_id and not any(tmp_path.glob(".s.zarr.scratch-*"))


def test_the_two_watersheds_are_not_combined(tmp_path):
    from unetseg import UnetsegError

    chunk_volume(write_tiff(tmp_path / "p.tif", np.zeros((1, 8, 8), np.float32)),
                 tmp_path / "p.zarr")  # fmt: skip
    with pytest.raises(UnetsegError, match="watershed_seed_threshold or split_h, not both"):
        segment_volume(tmp_path / "p.zarr", tmp_path / "s.zarr", 0.5, 0.8, split_h=2.0)
    assert not (tmp_path / "s.zarr").exists()
