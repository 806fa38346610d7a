import json

import numpy as np
import pytest
from conftest import write_tiff

from unetseg import report
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


def test_data_and_prediction_figures(stores):
    compute_weights(stores / "labels.zarr", stores / "w.zarr")
    report.data_figure(
        stores / "raw.zarr", stores / "labels.zarr", stores / "w.zarr", stores / "d.png"
    )
    report.prediction_figure(
        stores / "raw.zarr", stores / "labels.zarr", stores / "p.zarr", stores / "s.zarr",
        stores / "m.json", stores / "pred.png",
    )  # fmt: skip
    report.metrics_figure(stores / "m.json", stores / "metrics.png", "demo")
    assert all(is_png_with_content(stores / n) for n in ("d.png", "pred.png", "metrics.png"))


def test_training_figure(tmp_path):
    log = tmp_path / "log.tsv"
    log.write_text(
        "step\tloss\tpixel_error\trand_error\tlearning_rate\tseconds\n"
        "10\t0.9\t0.2\t0.3\t0.01\t1.0\n20\t0.5\t0.1\t0.2\t0.005\t2.0\n"
    )
    report.training_figure(log, tmp_path / "t.png")
    assert is_png_with_content(tmp_path / "t.png")
