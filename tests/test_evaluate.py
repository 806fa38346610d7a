import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from conftest import write_tiff
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from unetseg import UnetsegError
from unetseg.evaluate import (
    PIXEL_RAND_THRESHOLDS,
    SIMPLE_LOOKUP,
    WARPING_THRESHOLDS,
    evaluate_arrays,
    f_score,
)


def grid(rows):
    return np.array([[255 if c == "#" else 0 for c in row] for row in rows], np.uint8)


def bars(width=7, height=8):
    return grid(["###.###"[:width]] * height)


def e1():
    p = np.full((6, 6), 0.9)
    p[:, 2] = 0.3
    p[0, 0] = p[1, 0] = 0.7
    p[5, 4] = 0.05
    return grid(["##.###"] * 6), p


def e3():
    p = np.ones((6, 6))
    p[2] = 0
    return grid(["######"] * 6), p


def e4():
    p = (bars() > 0).astype(float)
    p[3:5, 3] = 1
    return bars(), p


def e5():
    gt = np.zeros((10, 10), np.uint8)
    gt[1:9, 1:9] = 255
    p = (gt > 0).astype(float)
    p[1:9, 5] = 0
    return gt, p


def e6():
    p = np.ones((8, 7))
    p[:, 4] = 0
    return bars(), p


def e7():
    p = (bars() > 0).astype(float)
    p[2:5, 3] = 0.55
    return bars(), p


E9_TRUTH = [
    "........",
    ".###.##.",
    ".###.##.",
    ".......#",
    ".##.###.",
    ".##.###.",
    ".##.###.",
    "........",
]
E9_PRED = [
    [.1, .2, .1, .2, .1, 0, .1, .2], [.2, .9, .8, .7, .4, .8, .9, .1],
    [.1, .8, .9, .6, .3, .9, .7, .3], [0, .4, .5, .6, .2, .5, .6, .8],
    [.1, .9, .7, .2, .6, .9, .8, .2], [.3, .8, .9, .4, .8, .7, .9, .1],
    [.2, .7, .6, .3, .9, .8, .9, 0], [0, .1, .2, .1, 0, .3, .2, .1],
]  # fmt: skip

# METRICS.md §8: pixel / Rand N² / Rand pairs / warping.
WORKED_EXAMPLES = {
    "E1": (e1, (0.0169492, 0.0376940, 0.0403800, 0)),
    "E2": (lambda: (grid(["##.##"] * 6), np.ones((6, 5))), (0.111111, 0.333333, 0.352941, 0.2)),
    "E3": (e3, (0.0909091, 0.464407, 0.484099, 0.0277778)),
    "E4": (e4, (0.0204082, 0.333333, 0.342857, 0.0357143)),
    "E5": (e5, (0.0666667, 0.436185, 0.446198, 0.01)),
    "E6": (e6, (0.166667, 0.156627, 0.164557, 0)),
    "E7": (e7, (0, 0, 0, 0)),
    "E8": (lambda: (bars(), np.zeros((8, 7))), (1, 0.92, 1, 0)),
    "E9": (lambda: (grid(E9_TRUTH), np.array(E9_PRED)), (0.0370370, 0.223744, 0.253886, 0)),
}


def headline(metrics):
    return [metrics[k] for k in ("pixel_error", "rand_error", "rand_error_pairs", "warping_error")]


@pytest.mark.parametrize("name", WORKED_EXAMPLES)
def test_worked_examples(name):
    make, expected = WORKED_EXAMPLES[name]
    truth, prediction = make()
    metrics = evaluate_arrays(truth, prediction.astype(np.float32))
    assert headline(metrics) == pytest.approx(expected, abs=5e-7)


def test_worked_example_details():
    truth, prediction = e1()
    metrics = evaluate_arrays(truth, prediction.astype(np.float32))
    expected_f = [0.909091, *[0.892308] * 3, *[0.983051] * 3, 0.947368, 0.947368, 0, 0]
    assert metrics["pixel"]["f_scores"] == pytest.approx(expected_f, abs=5e-7)
    assert metrics["warping"]["mergers"] == [6, 6, 6, 6, 0, 0, 0, 0, 0, 0]
    e9 = evaluate_arrays(grid(E9_TRUTH), np.array(E9_PRED, np.float32))
    assert e9["warping"]["mergers"] == [12, 12, 12, 9, 6, 1, 1, 0, 0, 0]
    assert evaluate_arrays(*[a.astype(np.float32) for a in e5()])["warping"]["splits"][0] == 1


def test_thresholds_are_javas():
    assert PIXEL_RAND_THRESHOLDS[3] == 0.30000000000000004
    assert PIXEL_RAND_THRESHOLDS[-1] == 0.9999999999999999
    assert len(PIXEL_RAND_THRESHOLDS) == 11
    assert PIXEL_RAND_THRESHOLDS[:10] == WARPING_THRESHOLDS


def test_float32_comparison_at_threshold():
    truth = np.full((1, 4), 255, np.uint8)
    # float32(0.3) > 0.30000000000000004 (interior); float32(0.7) < 0.7 (membrane).
    p = np.array([[0.3, 0.3, 0.7, 0.7]], np.float32)
    metrics = evaluate_arrays(truth, p)
    assert metrics["pixel"]["f_scores"][3] == pytest.approx(1.0)
    assert metrics["pixel"]["f_scores"][6] == pytest.approx(f_score(2, 0, 2))
    assert metrics["pixel"]["f_scores"][7] == 0.0  # float32(0.7) is membrane at t = 0.7


def test_116_simple_neighbourhoods():
    assert SIMPLE_LOOKUP.sum() == 116


def test_f_score_conventions():
    assert f_score(0, 0, 0) == 1.0
    assert f_score(0, 3, 0) == 0.0
    assert f_score(0, 0, 3) == 0.0


def test_empty_and_all_cell_predictions():
    truth = bars()
    empty = evaluate_arrays(truth, np.zeros(truth.shape, np.float32))
    assert empty["pixel_error"] == 1.0 and empty["rand_error_pairs"] == 1.0
    full = evaluate_arrays(truth, np.ones(truth.shape, np.float32))
    assert full["pixel_error"] == pytest.approx(1 - f_score(48, 8, 0))
    assert full["warping_error"] == pytest.approx(8 / 56)  # the membrane column merges


def test_slice_without_interior_poisons_n2_like_fiji():
    truth = np.stack([bars(), np.zeros((8, 7), np.uint8)])
    prediction = (truth > 0).astype(np.float32)
    metrics = evaluate_arrays(truth, prediction)
    assert metrics["rand_error"] == 1.0  # Fiji's N² counts are NaN for that slice
    assert metrics["rand_error_pairs"] == 0.0


def test_non_square_multi_slice_micro_average():
    truth = np.stack([bars(), bars()[:, ::-1]])
    _, p4 = e4()
    _, p6 = e6()
    stack = evaluate_arrays(truth, np.stack([p4, p6[:, ::-1]]).astype(np.float32))
    assert stack["warping_error"] == pytest.approx(2 / 112)
    assert len(stack["per_slice"]) == 2
    assert stack["per_slice"][0]["warping_error"] == pytest.approx(2 / 56)


def test_pairs_rand_matches_skimage_with_singletons():
    rng = np.random.default_rng(0)
    truth = (ndimage.gaussian_filter(rng.random((40, 50)), 2) > 0.48).astype(np.uint8) * 255
    prob = ndimage.gaussian_filter(rng.random((40, 50)), 2).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    threshold = 0.5
    truth_ids, _ = ndimage.label(truth > 0, structure=ndimage.generate_binary_structure(2, 1))
    pred_ids, n = ndimage.label(prob > threshold, structure=ndimage.generate_binary_structure(2, 1))
    singletons = pred_ids == 0
    pred_ids[singletons] = n + 1 + np.arange(singletons.sum())
    skimage_error = adapted_rand_error(truth_ids, pred_ids)[0]
    from unetseg.evaluate import best_f, rand_counts

    counts = rand_counts(truth, prob, [threshold])[1]
    assert 1 - best_f(counts)[0] == pytest.approx(skimage_error, abs=1e-12)


def test_overlap_counting_by_sorting_equals_the_table(monkeypatch):
    from unetseg import evaluate

    truth, prediction = e1()
    table = evaluate_arrays(truth, prediction.astype(np.float32))
    monkeypatch.setattr(evaluate, "MAX_PAIR_TABLE", 0)
    sorting = evaluate_arrays(truth, prediction.astype(np.float32))
    assert headline(sorting) == headline(table)


def test_isbi_real_slices(isbi_labels):
    """METRICS.md §9: the first 3 ISBI training slices under three transforms."""
    binary = isbi_labels[:3] > 0
    cross = ndimage.generate_binary_structure(2, 1)
    cases = {
        "eroded": (
            np.stack([ndimage.binary_erosion(b, cross, 1, border_value=1) for b in binary]),
            (0.0431265, 0.0514633, 0.0514728, 0.000186920),
        ),
        "gaussian": (
            np.stack([ndimage.gaussian_filter(b.astype(float), 2, mode="reflect", truncate=4) for b in binary]),
            (0.00905109, 0.0238666, 0.0238707, 0.000253042),
        ),
    }  # fmt: skip
    for prediction, expected in cases.values():
        metrics = evaluate_arrays(isbi_labels[:3], prediction.astype(np.float32), workers=2)
        assert headline(metrics)[:3] == pytest.approx(expected[:3], abs=5e-7)
        assert metrics["warping_error"] == pytest.approx(expected[3], abs=5e-10)
    per_threshold = np.array(metrics["warping"]["splits"]) + metrics["warping"]["mergers"]
    assert per_threshold.tolist() == [26892, 19496, 9452, 1951, 522, 220, 199, 283, 394, 545]


def test_shape_and_range_errors():
    with pytest.raises(UnetsegError, match="does not match"):
        evaluate_arrays(bars(), np.zeros((8, 6), np.float32))
    with pytest.raises(UnetsegError, match=r"within \[0, 1\]"):
        evaluate_arrays(bars(), np.full((8, 7), 2.0, np.float32))


def test_cli_writes_json_and_fails_in_one_line(tmp_path):
    truth, prediction = e4()
    write_tiff(tmp_path / "truth.tif", truth)
    write_tiff(tmp_path / "prob.tif", prediction.astype(np.float32))
    command = [sys.executable, "-m", "unetseg", "evaluate", "--truth", str(tmp_path / "truth.tif")]
    done = subprocess.run(
        [*command, "--prediction", str(tmp_path / "prob.tif"), "--out", str(tmp_path / "m.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["warping_error"] == pytest.approx(0.0357143, abs=5e-7)
    assert json.loads(done.stdout)["rand_error"] == pytest.approx(0.333333, abs=5e-7)
    write_tiff(tmp_path / "wrong.tif", np.zeros((5, 5), np.float32))
    failed = subprocess.run(
        [*command, "--prediction", str(tmp_path / "wrong.tif")], capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and "does not match" in failed.stderr


def test_instance_average_precision_hand_checked():
    from unetseg.evaluate import instance_metrics

    truth = np.zeros((10, 10), np.uint16)
    truth[:5, :5], truth[:5, 5:], truth[6:, :] = 1, 2, 3
    predicted = np.zeros((10, 10), np.uint32)
    predicted[:5, :5] = 7  # exact: IoU 1
    predicted[:5, 5:8] = 8  # 15 of 25 px: IoU 0.6
    predicted[9, :] = 9  # 10 of 40 px: IoU 0.25, unmatched at 0.5
    metrics = instance_metrics(truth, predicted)
    # IoU >= 0.5, 0.55, 0.6: TP 2, FP 1, FN 1 -> 0.5; from 0.65 on: TP 1, FP 2, FN 2 -> 0.2.
    expected = [0.5, 0.5, 0.5] + [0.2] * 7
    assert metrics["average_precision"] == pytest.approx(expected)
    assert metrics["ap50"] == 0.5 and metrics["mean_ap"] == pytest.approx(np.mean(expected))
    assert instance_metrics(truth, truth)["mean_ap"] == 1.0
    assert instance_metrics(truth, np.zeros_like(truth))["mean_ap"] == 0.0


def test_instance_errors_name_the_missed_false_split_and_merged_objects():
    from unetseg.evaluate import instance_errors

    truth = np.zeros((12, 12), np.uint16)
    truth[0:4, 0:4] = 1  # found exactly
    truth[0:4, 6:12] = 2  # split in three (IoU 1/3 each)
    truth[6:12, 0:2], truth[6:12, 2:4], truth[6:12, 4:6] = 3, 4, 6  # merged into one
    truth[6:8, 8:10] = 5  # missed
    predicted = np.zeros((12, 12), np.uint32)
    predicted[0:4, 0:4] = 10
    predicted[0:4, 6:8], predicted[0:4, 8:10], predicted[0:4, 10:12] = 11, 12, 15
    predicted[6:12, 0:6] = 13
    predicted[10:12, 10:12] = 14  # nothing there
    assert instance_errors(truth, predicted) == {
        "missed": [2, 3, 4, 5, 6], "false": [11, 12, 13, 14, 15], "split": [2], "merged": [13],
    }  # fmt: skip


def test_instance_average_precision_per_image():
    """Each slice's own AP beside the pooled one: an image of 2 objects found, one of 1 missed."""
    from unetseg.evaluate import instance_metrics

    truth = np.zeros((2, 10, 10), np.uint16)
    truth[0, :4, :4], truth[0, 6:, 6:], truth[1, 2:8, 2:8] = 1, 2, 3
    predicted = truth.astype(np.uint32)
    predicted[1] = 0
    metrics = instance_metrics(truth, predicted)
    assert metrics["per_slice"] == [
        {"slice": 0, "objects": 2, "ap50": 1.0, "mean_ap": 1.0},
        {"slice": 1, "objects": 1, "ap50": 0.0, "mean_ap": 0.0},
    ]
    assert metrics["ap50"] == pytest.approx(2 / 3)


def test_split_and_merger_locations_are_marked():
    from unetseg.evaluate import topology_errors

    truth, prediction = e4()  # 2 mergers at rows 3-4 of column 3
    marks = np.zeros(truth.shape, np.int8)
    assert topology_errors(truth, prediction.astype(np.float32), 0.5, marks) == (0, 2)
    assert np.argwhere(marks == 2).tolist() == [[3, 3], [4, 3]] and not (marks == 1).any()


def test_the_float32_threshold_compares_as_the_float64_one():
    from unetseg.evaluate import binarize, float32_threshold

    for threshold in (0.1, 0.3, 0.5, 0.7, 1 / 3):
        near = np.float32(threshold)
        values = np.array([np.nextafter(near, -1), near, np.nextafter(near, 2)], np.float32)
        expected = values.astype(np.float64) > threshold
        assert np.array_equal(values > float32_threshold(threshold), expected), threshold
        assert np.array_equal(binarize(values, threshold), expected), threshold


def random_cells(rng, shape, cells=12):
    """(y, x) instance ids: nearest of random seeds, with 1-px membranes between ids."""
    seeds = rng.integers(0, min(shape), (cells, 2))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ids = np.argmin([(yy - y) ** 2 + (xx - x) ** 2 for y, x in seeds], axis=0) + 1
    membrane = np.zeros(shape, bool)
    membrane[1:] |= ids[1:] != ids[:-1]
    membrane[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    return np.where(membrane, 0, ids)


def whole_stack_components(mask):
    """4-connected components per slice, ids unique across the stack: the stack skimage sees."""
    ids, offset = np.zeros(mask.shape, np.int64), 0
    for z, plane in enumerate(mask):
        found, count = ndimage.label(plane, structure=ndimage.generate_binary_structure(2, 1))
        ids[z] = np.where(found > 0, found + offset, 0)
        offset += count
    return ids


def test_skimage_comparison_from_slice_tables_equals_skimage_on_the_whole_stack():
    """The adapted Rand error and VI come from per-slice contingency tables, so the stack is
    never held whole; they must equal skimage's functions on the whole stack's images."""
    from skimage.metrics import variation_of_information

    rng = np.random.default_rng(3)
    truth = np.stack([random_cells(rng, (48, 40)) > 0 for _ in range(3)]).astype(np.uint8) * 255
    smooth = ndimage.gaussian_filter(truth.astype(float) / 255, (0, 1.5, 1.5))
    probability = np.clip(smooth + rng.normal(0, 0.15, truth.shape), 0, 1).astype(np.float32)
    probability[1, :10] = 0  # predicted membrane in more than one slice: one segment, as skimage
    metrics = evaluate_arrays(truth, probability, workers=2)
    threshold = metrics["skimage"]["threshold"]
    truth_ids = whole_stack_components(truth > 0)
    predicted_ids = whole_stack_components(probability.astype(np.float64) > threshold)
    split, merge = variation_of_information(truth_ids, predicted_ids, ignore_labels=(0,))
    expected = adapted_rand_error(truth_ids, predicted_ids)[0]
    assert metrics["skimage"]["adapted_rand_error"] == pytest.approx(expected, abs=1e-12)
    assert metrics["skimage"]["variation_of_information_split"] == pytest.approx(split, abs=1e-9)
    assert metrics["skimage"]["variation_of_information_merge"] == pytest.approx(merge, abs=1e-9)
    assert 0 < expected < 1 and split > 0 and merge > 0  # a comparison that can fail


def test_evaluation_reads_one_slice_at_a_time_from_files(tmp_path):
    """From TIFF or Zarr, each task reads single slices, never the stack, and the metrics equal
    those of the arrays in memory."""
    from unetseg import io
    from unetseg.chunk import chunk_volume

    rng = np.random.default_rng(4)
    truth = np.stack([random_cells(rng, (40, 40)) > 0 for _ in range(4)]).astype(np.uint8) * 255
    probability = ndimage.gaussian_filter(truth / 255.0, (0, 1, 1)).astype(np.float32)
    write_tiff(tmp_path / "truth.tif", truth)
    write_tiff(tmp_path / "prob.tif", probability)
    chunk_volume(tmp_path / "truth.tif", tmp_path / "truth.zarr", (1, 40, 40), is_labels=True)
    reads = []

    def counted(volume):
        def read(z):
            reads.append(z)
            return volume[z]

        return io.Slices(volume.name, volume.shape, volume.dtype, read)

    in_memory = headline(evaluate_arrays(truth, probability))
    for truth_path in ("truth.tif", "truth.zarr"):
        truth_file = counted(io.open_slices(tmp_path / truth_path))
        prob_file = counted(io.open_slices(tmp_path / "prob.tif"))
        assert truth_file.shape == probability.shape
        assert headline(evaluate_arrays(truth_file, prob_file, workers=2)) == in_memory
        # two passes (counts, then the contingency tables at the best threshold), two volumes
        assert sorted(reads) == sorted(list(range(4)) * 4)
        reads.clear()


def test_errors_name_the_prediction_file_and_slice(tmp_path):
    from unetseg import io

    truth = np.stack([bars()] * 3)
    probability = np.zeros(truth.shape, np.float32)
    probability[2, 0, 0] = 1.5
    write_tiff(tmp_path / "prob.tif", probability)
    prediction = io.open_slices(tmp_path / "prob.tif")
    with pytest.raises(UnetsegError, match=r"prob\.tif: probabilities .* \(slice 2\)"):
        evaluate_arrays(truth, prediction, names=("truth.tif", prediction.name))
    write_tiff(tmp_path / "4d.tif", np.zeros((2, 3, 8, 7), np.float32))
    with pytest.raises(UnetsegError, match=r"4d\.tif: a 4D image"):
        io.open_slices(tmp_path / "4d.tif")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 7, 3), np.uint8), photometric="rgb")
    with pytest.raises(UnetsegError, match=r"rgb\.tif: 3 samples per pixel"):
        io.open_slices(tmp_path / "rgb.tif")


def test_a_stack_stored_in_one_tiff_page_reads_as_slices(tmp_path):
    """tifffile's default for a (4, y, x) float32 array is one page of 4 planar samples: there
    is no page per slice to read, so the file is read whole, once."""
    from unetseg import io

    stack = np.random.default_rng(6).random((4, 9, 7)).astype(np.float32)
    tifffile.imwrite(tmp_path / "planar.tif", stack)
    with tifffile.TiffFile(tmp_path / "planar.tif") as tiff:
        assert len(tiff.pages) == 1  # the layout this test is about
    volume = io.open_slices(tmp_path / "planar.tif")
    assert volume.shape == (4, 9, 7)
    assert all(np.array_equal(volume[z], stack[z]) for z in range(4))


def test_instance_metrics_of_a_binary_truth_use_its_components():
    from unetseg.evaluate import instance_metrics
    from unetseg.labels import BINARY, volume_kind

    rng = np.random.default_rng(5)
    ids = np.stack([random_cells(rng, (30, 30), cells=6) for _ in range(2)]).astype(np.uint16)
    mask = ((ids > 0) * 255).astype(np.uint8)
    assert volume_kind(mask) == BINARY and volume_kind(ids) == "instance"
    as_ids = instance_metrics(whole_stack_components(ids > 0), ids)
    assert instance_metrics(mask, ids, BINARY) == as_ids and as_ids["mean_ap"] == 1.0


def test_instance_metrics_refuse_stacks_of_different_shapes_by_name():
    from unetseg.evaluate import instance_metrics

    ids = np.ones((2, 6, 5), np.uint16)
    with pytest.raises(
        UnetsegError, match=r"seg\.tif: shape \(1, 6, 5\) does not match truth t\.zarr"
    ):
        instance_metrics(ids, ids[:1], names=("t.zarr", "seg.tif"))
    assert instance_metrics(ids * 255, ids, kind=None)["mean_ap"] == 1.0  # kind detected: binary


def test_ap50_counts_match_plain_threshold_cells_to_true_objects():
    from unetseg.evaluate import ap50_counts

    truth = np.zeros((20, 20), np.int64)
    truth[2:8, 2:8], truth[12:18, 12:18] = 1, 2
    probability = np.zeros((20, 20), np.float32)
    probability[2:8, 2:8] = 0.9  # object 1 found at any threshold below 0.9
    probability[12:18, 12:15] = 0.6  # half of object 2: IoU 0.5
    probability[0, 19] = 0.3  # a false one-pixel cell at thresholds below 0.3
    counts = ap50_counts(truth, probability, [0.2, 0.5, 0.7, 0.9])
    assert counts.tolist() == [[2, 1, 0], [2, 0, 0], [1, 0, 1], [0, 0, 2]]
