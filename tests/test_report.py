import json

import numpy as np
import pytest
from conftest import write_tiff

from unetseg import io, report
from unetseg.chunk import chunk_volume
from unetseg.evaluate import evaluate_arrays
from unetseg.weights import compute_weights


def is_png_with_content(path) -> bool:
    from matplotlib.image import imread

    pixels = imread(path)
    return pixels.shape[0] > 200 and pixels.std() > 0.05  # not a blank page


@pytest.fixture
def stores(tmp_path, demo_arrays):
    raw, labels = demo_arrays
    chunk_volume(write_tiff(tmp_path / "r.tif", raw), tmp_path / "raw.zarr")
    chunk_volume(write_tiff(tmp_path / "l.tif", labels), tmp_path / "labels.zarr", is_labels=True)
    probability = (labels > 0).astype(np.float32) * 0.9
    chunk_volume(write_tiff(tmp_path / "p.tif", probability), tmp_path / "p.zarr")
    segmentation = np.stack([np.arange(96 * 96, dtype=np.uint16).reshape(96, 96) // 1000] * 4)
    chunk_volume(write_tiff(tmp_path / "s.tif", segmentation), tmp_path / "s.zarr")
    (tmp_path / "m.json").write_text(json.dumps(evaluate_arrays(labels[:1], probability[:1])))
    return tmp_path


@pytest.mark.parametrize("view_px", [report.VIEW_PX, 40], ids=["whole-slices", "windows"])
def test_every_figure_of_a_volume(stores, monkeypatch, view_px):
    """At VIEW_PX 40, the 96-px slices are shown by their centre window (and subsampled whole in
    the volume figure), as slices over 1024 px are: a figure's memory does not grow with them."""
    monkeypatch.setattr(report, "VIEW_PX", view_px)
    compute_weights(stores / "labels.zarr", stores / "w.zarr")
    report.data_figure(
        stores / "raw.zarr", stores / "labels.zarr", stores / "w.zarr", stores / "d.png"
    )
    report.prediction_figure(
        stores / "raw.zarr", stores / "labels.zarr", stores / "p.zarr", stores / "s.zarr",
        stores / "m.json", stores / "pred.png",
    )  # fmt: skip
    report.metrics_figure(stores / "m.json", stores / "metrics.png", "demo")
    report.volume_figure(
        stores / "raw.zarr", stores / "p.zarr", stores / "s.zarr", stores / "v.png", "demo"
    )
    report.augmentation_figure(
        stores / "raw.zarr", stores / "labels.zarr", stores / "w.zarr",
        {"tile_out": 20, "depth": 2}, stores / "a.png",
    )  # fmt: skip
    from unetseg.evaluate import instance_metrics

    instances = instance_metrics(
        io.open_zarr(stores / "labels.zarr"), io.open_zarr(stores / "s.zarr")
    )
    (stores / "i.json").write_text(json.dumps(instances))
    report.instances_figure(
        stores / "raw.zarr", stores / "labels.zarr", stores / "s.zarr", stores / "i.json",
        stores / "i.png",
    )  # fmt: skip
    figures = ("d.png", "pred.png", "metrics.png", "v.png", "a.png", "i.png")
    assert all(is_png_with_content(stores / name) for name in figures)


def test_augmented_samples_show_the_networks_input_scale(tmp_path, demo_arrays):
    """Samples are drawn on 0-1, not stretched: 12-bit data in uint16 read as `unit` (divided by
    65535: inputs under 0.07) come out black, and the figure is far darker than with
    `percentile`, which maps the volume's 1st-99.8th percentiles to 0-1."""
    from matplotlib.image import imread

    raw, labels = demo_arrays
    twelve_bit = raw.astype(np.uint16) * 16
    chunk_volume(write_tiff(tmp_path / "r.tif", twelve_bit), tmp_path / "raw.zarr")
    chunk_volume(write_tiff(tmp_path / "l.tif", labels), tmp_path / "labels.zarr", is_labels=True)
    compute_weights(tmp_path / "labels.zarr", tmp_path / "w.zarr")
    brightness = {}
    for method in ("unit", "percentile"):
        report.augmentation_figure(
            tmp_path / "raw.zarr", tmp_path / "labels.zarr", tmp_path / "w.zarr",
            {"tile_out": 20, "depth": 2, "normalize": method}, tmp_path / f"{method}.png",
        )  # fmt: skip
        pixels = imread(tmp_path / f"{method}.png")[..., :3]
        brightness[method] = pixels[: pixels.shape[0] // 2].mean()  # the samples' row
    assert brightness["percentile"] > brightness["unit"] + 0.1


def test_unannotated_pixels_are_tinted_in_the_data_figure(tmp_path, demo_arrays):
    from matplotlib.image import imread

    raw, labels = demo_arrays
    sparse = np.where(labels > 0, 1, 0).astype(np.uint8)
    sparse[:, :, 48:] = 7
    chunk_volume(write_tiff(tmp_path / "r.tif", raw), tmp_path / "raw.zarr")
    bluish = {}
    for name, array, ignore in (("dense", labels, None), ("sparse", sparse, 7)):
        labels_store, weights_store = tmp_path / f"{name}.zarr", tmp_path / f"{name}_w.zarr"
        chunk_volume(write_tiff(tmp_path / f"{name}.tif", array), labels_store, is_labels=True,
                     ignore_label=ignore)  # fmt: skip
        compute_weights(labels_store, weights_store)
        report.data_figure(tmp_path / "raw.zarr", labels_store, weights_store, tmp_path / "d.png")
        pixels = imread(tmp_path / "d.png")[..., :3]
        bluish[name] = np.mean(pixels[..., 2] > pixels[..., 0] + 0.15)
    assert bluish["sparse"] > bluish["dense"] + 0.15  # 0.30 against 0.03; 0.05 untinted


def test_augmented_samples_are_placed_as_training_places_them():
    """On an annotated pixel of a sparse slice, skipping slices without annotation; anywhere
    (centre None: drawn inside augmented_sample) in a dense one."""
    weights = np.zeros((3, 40, 40), np.float32)
    weights[2, 30:33, 5:9] = 1.0
    window = report.centre_window((40, 40))
    for seed in range(5):
        z, view, (y, x) = report.annotated_sample_place(
            np.random.default_rng(seed), weights, window
        )
        assert z == 2 and view[int(y), int(x)] > 0
    z, view, center = report.annotated_sample_place(np.random.default_rng(0), weights + 1, window)
    assert center is None and view.min() == 1


def test_centre_window_of_a_slice_and_where_it_lies(monkeypatch):
    monkeypatch.setattr(report, "VIEW_PX", 40)
    assert report.centre_window((96, 30)) == (slice(28, 68), slice(0, 30))
    assert report.window_note((slice(28, 68), slice(0, 30)), (96, 30)) == " (y 28:68, x 0:30)"
    assert report.window_note((slice(0, 96), slice(0, 30)), (96, 30)) == ""


def test_volume_statistics_count_cells_across_chunk_borders(tmp_path):
    segmentation = np.zeros((3, 50, 70), np.uint32)
    segmentation[0, 5:25, 10:60] = 7  # 1000 px, across 3 x 2 chunks of 16 px
    segmentation[0, 30:33, 1:2] = 9  # 3 px
    segmentation[2, :, :] = 4  # one cell filling the slice; slice 1 has none
    probability = np.random.default_rng(0).random((3, 50, 70)).astype(np.float32)
    probability[0, 0, 0], probability[1, 0, 0] = 0.0, 1.0  # both ends fall in a bin
    for name, array in (("s", segmentation), ("p", probability)):
        chunk_volume(write_tiff(tmp_path / f"{name}.tif", array), tmp_path / f"{name}.zarr",
                     chunks=(1, 16, 16), is_labels=name == "s")  # fmt: skip
    cells, areas, histogram = report.volume_statistics(
        io.open_zarr(tmp_path / "p.zarr"), io.open_zarr(tmp_path / "s.zarr"), bins=10
    )
    assert cells.tolist() == [2, 0, 1]
    assert sorted(areas.tolist()) == [3, 1000, 50 * 70]
    assert histogram.tolist() == np.histogram(probability, bins=10, range=(0, 1))[0].tolist()


def test_training_figure(tmp_path):
    log = tmp_path / "log.tsv"
    log.write_text(
        "step\tloss\tpixel_error\trand_error\tlearning_rate\tseconds\n"
        "10\t0.9\t0.2\t0.3\t0.01\t1.0\n20\t0.5\t0.1\t0.2\t0.005\t2.0\n"
    )
    report.training_figure(log, tmp_path / "t.png")
    assert is_png_with_content(tmp_path / "t.png")
    assert report.rollback_steps(report.read_tsv(log)) == []  # from before rollbacks existed


def test_the_kept_step_is_chosen_as_training_chooses_it(tmp_path):
    """The last of the lowest Rand errors; of the highest AP50s where the run kept by it."""
    log = tmp_path / "log.tsv"
    header = "step\tloss\tpixel_error\trand_error\tlearning_rate\tseconds\tap50\tevent\n"
    log.write_text(header + "10\t0.9\t0.2\t0.3\t0.01\t1\t\t\n20\t0.5\t0.1\t0.2\t0.01\t2\t\t\n"
                   "30\t0.4\t0.1\t0.2\t0.01\t3\t\t\n")  # fmt: skip
    assert report.kept_step(report.read_tsv(log)) == 30
    log.write_text(header + "10\t0.9\t0.2\t0.3\t0.01\t1\t0.6\t\n20\t0.5\t0.1\t0.2\t0.01\t2\t0.8\t\n"
                   "30\t0.4\t0.1\t0.1\t0.01\t3\t0.7\t\n")  # fmt: skip
    assert report.kept_step(report.read_tsv(log)) == 20
    report.training_figure(log, tmp_path / "t.png")
    assert is_png_with_content(tmp_path / "t.png")


def test_a_row_the_guard_flagged_is_not_the_kept_one(tmp_path):
    """Training keeps no model from a validation the guard flagged (its row names the rollback
    or the stop), even the lowest Rand error of the log; a row of an unguarded run has no event."""
    log = tmp_path / "log.tsv"
    header = "step\tloss\tpixel_error\trand_error\tlearning_rate\tseconds\tap50\tevent\n"
    log.write_text(header + "10\t0.9\t0.2\t0.3\t0.01\t1\t\t\n"
                   "20\t0.5\t0.4\t0.1\t0.01\t2\t\trollback 1 of 3 at step 20 to 10, learning"
                   " rate x0.5: validation pixel error 0.4\n"
                   "30\t0.4\t0.1\t0.2\t0.005\t3\t\t\n")  # fmt: skip
    parsed = report.read_tsv(log)
    assert report.kept_step(parsed) == 30
    assert report.events(parsed)[1].startswith("rollback") and report.rollback_steps(parsed) == [20]
    # a watched validation is not kept either; a restored learning rate is a healthy row
    for event, kept in (("watched: validation rand_error rose to 0.8", 30),
                        ("learning rate restored to x1: a new best", 20)):  # fmt: skip
        log.write_text(header + f"10\t0.9\t0.2\t0.3\t0.01\t1\t\t\n20\t0.5\t0.1\t0.1\t0.01\t2\t\t{event}\n"
                       "30\t0.4\t0.1\t0.2\t0.005\t3\t\t\n")  # fmt: skip
        assert report.kept_step(report.read_tsv(log)) == kept
    assert parsed["rand_error"][1] == 0.1  # the figure still plots the flagged validation
    log.write_text(header + "10\tnan\t0.2\t0.3\t0.01\t1\t\t\n")  # a diverged loss is a number
    assert np.isnan(report.read_tsv(log)["loss"][0])
    log.write_text("s\th:m:s\tmax_rss\n1.5\t0:00:01\tNA\n")  # a Snakemake benchmark file
    benchmark = report.read_tsv(log)
    assert benchmark["s"][0] == 1.5 and np.isnan(benchmark["max_rss"][0])
    assert benchmark["h:m:s"][0] == "0:00:01"


def test_training_figure_marks_rollbacks(tmp_path):
    log = tmp_path / "log.tsv"
    header = "step\tloss\tpixel_error\trand_error\tlearning_rate\tseconds\trand_spread\tsamples_per_s\tevent\n"
    log.write_text(
        header + "10\t0.9\t0.2\t0.3\t0.01\t1.0\t0\t5\t\n"
        "13\t\t\t\t0.01\t1.3\t\t\trollback 1 of 3 at step 13 to 10, learning rate x0.5: nan\n"
        "20\t0.5\t0.1\t0.2\t0.005\t2.0\t0.1\t5\t\n"
    )
    assert report.rollback_steps(report.read_tsv(log)) == [13.0]
    assert report.stopped_note(report.read_tsv(log)) is None
    report.training_figure(log, tmp_path / "t.png")
    assert is_png_with_content(tmp_path / "t.png")


def test_a_run_that_stopped_with_its_rollbacks_spent_says_so_above_its_figure(tmp_path):
    log = tmp_path / "log.tsv"
    header = "step\tloss\tpixel_error\trand_error\tlearning_rate\tseconds\tevent\n"
    log.write_text(
        header + "10\t0.9\t0.11\t0.35\t0.01\t1.0\t\n"
        "20\t0.9\t0.12\t0.36\t0.005\t2.0\trollback 1 of 1 at step 20 to 10, learning rate x0.5: …\n"
        "30\t0.9\t0.12\t0.36\t0.005\t3.0\tstopped: validation pixel_error 0.12 …, after 1 rollbacks\n"
    )
    note = report.stopped_note(report.read_tsv(log))
    assert note.startswith(
        "Training stopped at step 30 with its rollbacks spent; the kept model (step 10)"
    )
    report.training_figure(log, tmp_path / "t.png")
    assert is_png_with_content(tmp_path / "t.png")


def test_the_base_install_can_build_the_report():
    """After set-up command 1 (no test extras), `snakemake --report` needs pygments, which only
    snakemake's reports extra brings; pytest brings it to the test install, hiding its lack."""
    from importlib.metadata import requires

    assert any(req.replace(" ", "").startswith("snakemake[reports]") for req in requires("unetseg"))
