"""End-to-end: the real snakemake on a tiny demo in a temporary directory."""

import subprocess
import sys

import numpy as np
import tifffile
import yaml
from conftest import REPO, TINY_CONFIG, jobs_in_dry_run, snakemake

from unetseg import io


def test_every_output_is_there_and_sound(finished_run):
    workdir, done = finished_run
    results = workdir / "results"
    raw = tifffile.imread(results / "demo/raw.tif")
    assert raw.shape == (4, 64, 64)
    assert np.array_equal(io.open_zarr(results / "tiny_val/raw.zarr")[...], raw[3:4])
    assert io.open_zarr(results / "tiny_train/weights.zarr").shape == (3, 64, 64)
    assert (results / "model/model.pt").stat().st_size > 0
    log_lines = (results / "model/train_log.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in log_lines] == ["step", "5", "10"]
    probability = io.open_zarr(results / "tiny_val/probability.zarr")[...].astype(np.float32)
    assert probability.shape == (1, 64, 64) and 0 <= probability.min() <= probability.max() <= 1
    segmentation = tifffile.imread(results / "tiny_val/segmentation.tif")
    assert segmentation.shape == (64, 64) and segmentation.dtype == np.uint32
    metrics = yaml.safe_load((results / "tiny_val/metrics.json").read_text())
    assert all(0 <= metrics[k] <= 1 for k in ("pixel_error", "rand_error", "warping_error"))
    for figure in (
        "training.png",
        "tiny_train/data.png",
        "tiny_val/prediction.png",
        "tiny_val/metrics.png",
    ):
        assert (results / "report" / figure).read_bytes()[:4] == b"\x89PNG"
    for rule in ("chunk_raw", "weights", "train", "predict", "segment", "evaluate"):
        assert list((results / "benchmarks" / rule).glob("*.tsv")), rule
    assert "tiny_val: pixel error" in done.stderr  # metrics printed at the end of the run
    summary = (results / "metrics_summary.tsv").read_text().splitlines()
    assert summary[0].split("\t")[:4] == ["volume", "warping_error", "rand_error", "pixel_error"]
    assert summary[1].startswith("tiny_val\t") and "paper Table 1: u-net (paper)" in summary[3]


def test_second_run_does_nothing(finished_run):
    workdir, _ = finished_run
    done = snakemake(workdir)
    assert done.returncode == 0
    assert "Nothing to be done" in done.stdout + done.stderr


def test_changed_predict_parameter_reruns_predict_and_downstream_only(finished_run):
    workdir, _ = finished_run
    changed = {**TINY_CONFIG, "predict": {**TINY_CONFIG["predict"], "batch_size": 2}}
    (workdir / "changed.yaml").write_text(yaml.safe_dump(changed))
    done = snakemake(workdir, "-n", "--configfile", str(workdir / "changed.yaml"))
    assert done.returncode == 0, done.stderr
    jobs = jobs_in_dry_run(done.stdout)
    assert jobs == {
        "predict": 1, "segment": 1, "export_segmentation": 1, "evaluate": 1,
        "evaluate_instances": 1, "summarize": 1, "report_prediction": 1, "report_metrics": 1,
        "report_run": 1, "all": 1,
    }  # fmt: skip


def test_report_builds(finished_run):
    workdir, _ = finished_run
    done = snakemake(workdir, "--report", str(workdir / "report.html"))
    assert done.returncode == 0, done.stderr[-2000:]
    html = (workdir / "report.html").read_text()
    assert all(
        category in html for category in ("Data", "Training", "Prediction", "Metrics", "Run")
    )


def test_unknown_config_key_names_the_key(tmp_path):
    bad = {**TINY_CONFIG, "predict": {**TINY_CONFIG["predict"], "tile_outt": 28}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    done = snakemake(tmp_path, "-n")
    assert done.returncode != 0
    assert "config: predict.tile_outt: unknown key" in done.stdout + done.stderr


def test_invalid_tile_size_names_nearest_valid(tmp_path):
    bad = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "tile_out": 21}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    done = snakemake(tmp_path, "-n")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "train.tile_out: 21 px is not a valid U-Net output size" in output
    assert "nearest valid: 20 or 24" in output


def test_lint_is_clean():
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(REPO / "Snakefile")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Lints for" not in done.stdout + done.stderr
