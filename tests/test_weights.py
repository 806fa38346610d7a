import numpy as np
import pytest
from conftest import write_tiff
from scipy import ndimage

from bench.train import direct_weight_map
from unetseg import io, labels
from unetseg.chunk import chunk_volume
from unetseg.weights import class_balance, compute_weights, weight_map, weight_volume


def test_matches_direct_reference_on_demo(demo_arrays):
    _, label_volume = demo_arrays
    for slice_labels in label_volume:
        ids = labels.cells(slice_labels, labels.BINARY)
        fast = weight_map(ids, slice_labels > 0, 10.0, 5.0)
        assert np.abs(fast - direct_weight_map(ids, slice_labels > 0)).max() <= 1e-4


def test_matches_direct_reference_on_isbi(isbi_labels):
    slice_labels = isbi_labels[0]
    ids = labels.cells(slice_labels, labels.BINARY)
    fast = weight_map(ids, slice_labels > 0, 10.0, 5.0)
    reference = direct_weight_map(ids, slice_labels > 0)
    assert np.abs(fast - reference).max() <= 1e-4


def test_hand_checked_two_cells():
    # Two cells separated by a 2-px gap: a gap pixel is 1 px from one cell and 2 px from the other.
    interior = np.zeros((5, 8), bool)
    interior[:, :3] = interior[:, 5:] = True
    ids, _ = ndimage.label(interior)
    weights = weight_map(ids, interior, w0=10.0, sigma_px=5.0)
    w_c_membrane = 30 / 10  # 30 interior, 10 membrane pixels
    assert weights[2, 3] == pytest.approx(w_c_membrane + 10 * np.exp(-(3**2) / 50), abs=1e-6)
    assert weights[2, 0] == pytest.approx(1.0)


def test_single_cell_has_no_border_term():
    interior = np.zeros((6, 6), bool)
    interior[1:5, 1:5] = True
    ids, _ = ndimage.label(interior)
    assert np.allclose(weight_map(ids, interior, 10.0, 5.0), class_balance(interior))


def test_instance_labels_get_separation_border():
    ids = np.zeros((1, 6, 8), np.uint16)
    ids[0, :, :4], ids[0, :, 4:] = 3, 9
    interior = labels.interior(ids, labels.INSTANCE)
    assert not interior[0, :, 4].any()  # a 1-px border where the ids meet
    assert interior[0, :, :4].all() and interior[0, :, 5:].all()


def test_compute_weights_store(tmp_path, demo_arrays):
    _, label_volume = demo_arrays
    tiff = write_tiff(tmp_path / "labels.tif", label_volume)
    chunk_volume(tiff, tmp_path / "labels.zarr", chunks=(1, 64, 64), is_labels=True)
    compute_weights(tmp_path / "labels.zarr", tmp_path / "weights.zarr", 10.0, 5.0, workers=2)
    stored = io.open_zarr(tmp_path / "weights.zarr")
    assert stored.shape == label_volume.shape and stored.dtype == np.float32
    ids = labels.cells(label_volume[2], labels.BINARY)
    assert np.array_equal(stored[2], weight_map(ids, label_volume[2] > 0, 10.0, 5.0))


def test_unannotated_pixels_weigh_zero_and_count_for_nothing(demo_arrays):
    """With the right part of a slice unannotated, the left part's map is the map of the left
    part alone: the class balance counts only annotated pixels, and the border term sees only
    the annotated cells."""
    _, label_volume = demo_arrays
    sparse = label_volume[1].copy()
    sparse[:, 40:] = 7
    ids, interior = (
        labels.cells(sparse, labels.BINARY, 7),
        labels.interior(sparse, labels.BINARY, 7),
    )
    weights = weight_map(ids, interior, 10.0, 5.0, labels.annotated(sparse, 7))
    assert not weights[:, 40:].any()
    left = label_volume[1][:, :40]
    expected = weight_map(labels.cells(left, labels.BINARY), left > 0, 10.0, 5.0)
    assert np.array_equal(weights[:, :40], expected)
    dense = weight_map(labels.cells(label_volume[1], labels.BINARY), label_volume[1] > 0, 10.0, 5.0)
    assert not np.allclose(weights[:, :40], dense[:, :40])  # the right part's cells were seen


def test_instance_cells_get_no_border_against_unannotated_pixels():
    ids = np.zeros((6, 9), np.uint16)
    ids[:, :4], ids[:, 4:] = 65535, 3  # 65535: not annotated
    assert np.array_equal(labels.interior(ids, labels.INSTANCE, 65535), ids == 3)
    assert not labels.interior(ids, labels.INSTANCE)[:, 4].any()  # without it: an id border
    assert labels.cells(ids, labels.INSTANCE, 65535).max() == 3


def test_compute_weights_store_of_sparse_labels(tmp_path, demo_arrays):
    _, label_volume = demo_arrays
    sparse = np.where(label_volume > 0, 1, 0).astype(np.uint8)
    sparse[1:, 30:70, 30:70] = 9
    tiff = write_tiff(tmp_path / "labels.tif", sparse)
    chunk_volume(tiff, tmp_path / "labels.zarr", chunks=(1, 64, 64), is_labels=True, ignore_label=9)
    compute_weights(tmp_path / "labels.zarr", tmp_path / "weights.zarr", 10.0, 5.0, workers=2)
    stored = io.open_zarr(tmp_path / "weights.zarr")[...]
    assert np.array_equal(stored == 0, sparse == 9)
    assert io.zarr_attrs(tmp_path / "weights.zarr")["ignore_label"] == 9


def test_a_slice_with_nothing_annotated_weighs_zero():
    nothing = np.full((8, 8), 9, np.uint8)
    weights = weight_map(labels.cells(nothing, labels.BINARY, 9),
                         labels.interior(nothing, labels.BINARY, 9), 10.0, 5.0,
                         labels.annotated(nothing, 9))  # fmt: skip
    assert weights.shape == (8, 8) and not weights.any()


def blockwise_weights(tmp_path, label_volume, chunks, block_px, **chunk_options) -> np.ndarray:
    tiff = write_tiff(tmp_path / "labels.tif", label_volume)
    chunk_volume(tiff, tmp_path / "labels.zarr", chunks=chunks, is_labels=True, **chunk_options)
    compute_weights(tmp_path / "labels.zarr", tmp_path / "weights.zarr", 10.0, 5.0, workers=2,
                    block_px=block_px)  # fmt: skip
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch left
    return io.open_zarr(tmp_path / "weights.zarr")[...]


def scattered_cells(shape, count: int = 14, seed: int = 3) -> np.ndarray:
    """Small round cells far apart (0/255): their nearest neighbours lie up to the border term's
    reach away, where the demo's packed cells always have one across a thin membrane."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    cells = np.zeros(shape, bool)
    for cy, cx, radius in zip(*(rng.uniform(0, n, count) for n in shape),
                              rng.uniform(2, 5, count), strict=True):  # fmt: skip
        cells |= (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    return cells.astype(np.uint8) * 255


def touching_instances(binary: np.ndarray) -> np.ndarray:
    """Instance ids of the demo's cells grown into their membranes, so that cells touch."""
    from skimage.segmentation import expand_labels

    return np.stack([expand_labels(ndimage.label(s > 0)[0], 2) for s in binary]).astype(np.uint16)


@pytest.mark.parametrize("kind, ignore", [("binary", None), ("binary", 9), ("instance", None),
                                          ("instance", 65535)])  # fmt: skip
@pytest.mark.parametrize("chunks, block_px", [((1, 16, 16), 16), ((2, 16, 32), 40),
                                              ((4, 96, 96), 1024)])  # fmt: skip
def test_weights_by_blocks_equal_those_of_whole_slices(
    tmp_path, demo_arrays, kind, ignore, chunks, block_px
):
    """Each block sees the labels within the border term's reach, the whole slice's cells and
    class counts: its weights are exactly those of the whole slice (blocks of 16 px cut the
    demo's 24-px cells and the 30-px reach many times over; slice 0 has cells far apart)."""
    binary = demo_arrays[1].copy()
    binary[0] = scattered_cells(binary.shape[1:])
    label_volume = binary if kind == "binary" else touching_instances(binary)
    if ignore is not None:
        label_volume = label_volume.copy()
        label_volume[1:, 20:50, 30:90] = ignore
    expected = weight_volume(label_volume, kind, 10.0, 5.0, ignore)
    stored = blockwise_weights(tmp_path, label_volume, chunks, block_px, ignore_label=ignore)
    assert np.array_equal(stored, expected)


def test_a_cell_that_leaves_a_block_and_returns_is_one_cell(tmp_path):
    """The arms of a U whose base lies beyond a block's reach are one cell, not two: the gap
    between them gets no border term (a block that labelled its own window would give it one)."""
    u_shape = np.zeros((1, 112, 64), np.uint8)
    u_shape[0, :100, 10:15] = u_shape[0, :100, 20:25] = u_shape[0, 95:100, 10:25] = 255
    stored = blockwise_weights(tmp_path, u_shape, (1, 16, 16), 16)
    interior = u_shape[0] > 0
    assert np.array_equal(stored[0], class_balance(interior).astype(np.float32))
    assert np.array_equal(stored, weight_volume(u_shape, "binary", 10.0, 5.0))
