"""End-to-end: the real snakemake on a tiny demo in a temporary directory."""

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from conftest import REPO, TINY_CONFIG, jobs_in_dry_run, snakemake, write_tiff, write_tiny_workdir

from unetseg import io


def test_every_output_is_there_and_sound(finished_run):
    workdir, done = finished_run
    results = workdir / "results"
    raw = tifffile.imread(results / "demo/raw.tif")
    assert raw.shape == (4, 64, 64)
    assert np.array_equal(io.open_zarr(results / "tiny_val/raw.zarr")[...], raw[3:4])
    assert io.open_zarr(results / "tiny_train/weights.zarr").shape == (3, 64, 64)
    assert (results / "model/model.pt").stat().st_size > 0
    rdf = yaml.safe_load((results / "model/bioimageio/rdf.yaml").read_text())  # a model package
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["depth"] == 2
    assert (results / "model/bioimageio.zip").stat().st_size > 0
    log_lines = (results / "model/train_log.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in log_lines] == ["step", "5", "10"]
    probability = io.open_zarr(results / "tiny_val/probability.zarr")[...].astype(np.float32)
    assert probability.shape == (1, 64, 64) and 0 <= probability.min() <= probability.max() <= 1
    segmentation = tifffile.imread(results / "tiny_val/segmentation.tif")
    assert segmentation.shape == (64, 64) and segmentation.dtype == np.uint16  # ids fit
    metrics = yaml.safe_load((results / "tiny_val/metrics.json").read_text())
    assert all(0 <= metrics[k] <= 1 for k in ("pixel_error", "rand_error", "warping_error"))
    for figure in (
        "training.png",
        "tiny_train/data.png",
        "tiny_val/prediction.png",
        "tiny_val/metrics.png",
        "tiny_val/volume.png",
        "tiny_extra/volume.png",
    ):
        assert (results / "report" / figure).read_bytes()[:4] == b"\x89PNG"
    for rule in ("chunk_raw", "weights", "train", "predict", "segment", "evaluate"):
        assert list((results / "benchmarks" / rule).glob("*.tsv")), rule
    assert "tiny_val: pixel error" in done.stderr  # metrics printed at the end of the run
    choice = json.loads((results / "model/validation.json").read_text())
    assert choice["slices"] == ["tiny_val z0"] and choice["validations"] == 2
    assert (
        choice["kept"]["step"] == torch.load(results / "model/model.pt", weights_only=True)["step"]
    )
    assert f"Training kept step {choice['kept']['step']}: validation Rand error" in done.stderr
    summary = (results / "metrics_summary.tsv").read_text().splitlines()
    assert summary[0].split("\t")[:5] == [
        "volume", "role", "warping_error", "rand_error", "pixel_error"]  # fmt: skip
    assert summary[1].startswith("tiny_val\tvalidate\t")  # it chose the kept model
    assert "paper Table 1: u-net (paper)" in summary[3]


def test_second_run_does_nothing(finished_run):
    workdir, _ = finished_run
    done = snakemake(workdir)
    assert done.returncode == 0
    assert "Nothing to be done" in done.stdout + done.stderr


@contextmanager
def replaced(path: Path, change):
    """Change a file's bytes for the duration; Snakemake compares checksums, so touching is not enough."""
    original = path.read_bytes()
    path.write_bytes(change(original))
    try:
        yield
    finally:
        path.write_bytes(original)


def dry_run_jobs(workdir: Path, config: dict) -> dict[str, int]:
    (workdir / "changed.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(workdir, "-n", "--configfile", str(workdir / "changed.yaml"))
    assert done.returncode == 0, done.stderr
    return jobs_in_dry_run(done.stdout) if "Job stats:" in done.stdout else {}


# What follows the predictions of one volume: (validate volumes only) evaluation and its reports.
SEGMENT_ON = {
    "segment": 1, "export_segmentation": 1, "view": 1, "report_volume": 1, "report_run": 1, "all": 1,
}  # fmt: skip
EVALUATE_ON = {
    "evaluate": 1, "evaluate_instances": 1, "summarize": 1, "report_prediction": 1,
    "report_metrics": 1, "report_instances": 1,
}  # fmt: skip


def write_config(path: Path, volume_name: str, **keys) -> None:
    """TINY_CONFIG with `keys` set on one of its volumes, written to `path`."""
    volumes = [
        {**volume, **keys} if volume["name"] == volume_name else volume
        for volume in TINY_CONFIG["volumes"]
    ]
    path.write_text(yaml.safe_dump({**TINY_CONFIG, "volumes": volumes}))


def test_changed_predict_parameter_reruns_predict_and_downstream_only(finished_run):
    workdir, _ = finished_run
    changed = {**TINY_CONFIG, "predict": {**TINY_CONFIG["predict"], "batch_size": 2}}
    jobs = dry_run_jobs(workdir, changed)
    # Both volumes are predicted again; 'auto' thresholds tie segment to validation metrics.
    assert jobs == {
        "predict": 2,
        **SEGMENT_ON,
        "segment": 2,
        "export_segmentation": 2,
        "view": 2,
        "report_volume": 2,
        **EVALUATE_ON,
    }


def test_changed_weight_map_parameter_reruns_weights_train_and_downstream_not_chunking(
    finished_run,
):
    workdir, _ = finished_run
    changed = {**TINY_CONFIG, "weights": {"w0": 5.0}}
    jobs = dry_run_jobs(workdir, changed)
    assert jobs == {
        "weights": 1, "report_data": 1, "report_augmentation": 1, "train": 1, "export_model": 1,
        "report_training": 1, "predict": 2, **SEGMENT_ON, "segment": 2,
        "export_segmentation": 2, "view": 2, "report_volume": 2, **EVALUATE_ON,
    }  # fmt: skip


def test_changed_normalisation_reruns_train_and_downstream_not_weights(finished_run):
    workdir, _ = finished_run
    changed = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "normalize": "unit"}}
    jobs = dry_run_jobs(workdir, changed)
    assert jobs == {
        "report_augmentation": 1, "train": 1, "export_model": 1, "report_training": 1, "predict": 2,
        **SEGMENT_ON,
        "segment": 2, "export_segmentation": 2, "view": 2, "report_volume": 2, **EVALUATE_ON,
    }  # fmt: skip


def test_changed_minimum_cell_size_reruns_segmentation_not_prediction(finished_run):
    workdir, _ = finished_run
    changed = {**TINY_CONFIG, "segment": {**TINY_CONFIG["segment"], "min_size_px": 20}}
    jobs = dry_run_jobs(workdir, changed)
    # The ISBI errors score the probabilities, not the cells: evaluate and its figures stay.
    assert jobs == {**SEGMENT_ON, "segment": 2, "export_segmentation": 2, "view": 2, "report_volume": 2,
                    "evaluate_instances": 1, "summarize": 1, "report_prediction": 1,
                    "report_instances": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("keys", "reruns", "kept", "shown"),
    [
        ({"label_kind": "binary"}, ["chunk_labels"], ["chunk_raw"], ["--label-kind binary"]),
        ({"channel": 0}, ["chunk_raw", "chunk_labels"], [], ["--channel 0", "--match-channel 0"]),
        ({"ignore_label": 9}, ["chunk_labels", "weights", "train"], ["chunk_raw"],
         ["--ignore-label 9"]),
    ],
    ids=["label_kind", "channel", "ignore_label"],
)  # fmt: skip
def test_a_volume_key_reaches_its_chunk_steps_and_reruns_that_volume_only(
    finished_run, keys, reruns, kept, shown
):
    """Each rerun step runs once: for the changed volume, not for the others."""
    workdir, _ = finished_run
    write_config(workdir / "changed.yaml", "tiny_train", **keys)
    done = snakemake(workdir, "-n", "-p", "--configfile", str(workdir / "changed.yaml"))
    assert done.returncode == 0, done.stderr
    jobs = jobs_in_dry_run(done.stdout)
    assert all(jobs[step] == 1 for step in reruns) and not any(step in jobs for step in kept)
    assert all(text in done.stdout for text in shown)


def test_changed_raw_file_reruns_that_volume_only(finished_run):
    workdir, _ = finished_run
    with replaced(workdir / "extra.tif", lambda raw: raw[:-1] + bytes([raw[-1] ^ 1])):
        jobs = dry_run_jobs(workdir, TINY_CONFIG)
    # tiny_extra is a predict volume: chunked, predicted, segmented; the model is untouched.
    assert jobs == {"chunk_raw": 1, "predict": 1, **SEGMENT_ON}


def test_changed_stage_code_reruns_that_stage_and_downstream(finished_run):
    workdir, _ = finished_run
    with replaced(REPO / "workflow/unetseg/segment.py", lambda code: code + b"# edited\n"):
        jobs = dry_run_jobs(workdir, TINY_CONFIG)
    assert jobs == {
        **SEGMENT_ON, "segment": 2, "export_segmentation": 2, "view": 2, "report_volume": 2,
        "evaluate_instances": 1, "summarize": 1, "report_prediction": 1, "report_instances": 1,
    }  # fmt: skip


def test_nothing_changed_reruns_nothing(finished_run):
    workdir, _ = finished_run
    assert dry_run_jobs(workdir, TINY_CONFIG) == {}


def test_report_builds(finished_run):
    workdir, _ = finished_run
    done = snakemake(workdir, "--report", str(workdir / "report.html"))
    assert done.returncode == 0, done.stderr[-2000:]
    html = (workdir / "report.html").read_text()
    assert all(
        category in html for category in ("Data", "Training", "Prediction", "Metrics", "Run")
    )


def test_sparse_annotation_trains_and_shows_in_the_data_figure(tmp_path):
    """A train volume annotated in one part of each slice (the rest marked 9): chunking records
    the ignore label, its weight maps are 0 there, training learns, and the data figure draws."""
    from unetseg.data import demo_volume

    raw, labels = demo_volume((4, 64, 64), seed=3)
    sparse = np.where(labels > 0, 1, 0).astype(np.uint8)
    sparse[:3, :, 40:] = 9
    write_tiff(tmp_path / "raw.tif", raw)
    write_tiff(tmp_path / "sparse.tif", sparse)
    write_tiff(tmp_path / "labels.tif", labels)
    volumes = [
        {"name": "sparse_train", "raw": "raw.tif", "labels": "sparse.tif", "ignore_label": 9,
         "role": "train", "slices": [0, 3]},
        {"name": "val", "raw": "raw.tif", "labels": "labels.tif", "role": "validate",
         "slices": [3, 4]},
    ]  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "volumes": volumes}))
    targets = ["results/model/model.pt", "results/report/sparse_train/data.png"]
    done = snakemake(tmp_path, *targets)
    assert done.returncode == 0, done.stderr[-3000:]
    store = tmp_path / "results/sparse_train"
    assert io.zarr_attrs(store / "labels.zarr")["ignore_label"] == 9
    weights = io.open_zarr(store / "weights.zarr")[...]
    assert np.array_equal(weights == 0, sparse[:3] == 9)
    rows = (tmp_path / "results/model/train_log.tsv").read_text().splitlines()
    assert len(rows) == 3 and all(np.isfinite(float(row.split("\t")[1])) for row in rows[1:])
    assert (tmp_path / targets[1]).stat().st_size > 10_000


def test_an_ignore_label_on_a_validate_volume_is_refused_by_name(tmp_path):
    write_config(tmp_path / "config.yaml", "tiny_val", ignore_label=9)
    done = snakemake(tmp_path, "-n")
    assert done.returncode != 0
    expected = "volumes: 'tiny_val' has an ignore_label, but only train volumes may be sparsely"
    assert expected in done.stdout + done.stderr


def test_unknown_config_key_names_the_key(tmp_path):
    bad = {**TINY_CONFIG, "predict": {**TINY_CONFIG["predict"], "tile_outt": 28}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    done = snakemake(tmp_path, "-n")
    assert done.returncode != 0
    assert "config: predict.tile_outt: unknown key" in done.stdout + done.stderr


def test_a_nested_value_on_the_command_line_takes_its_type_or_is_named(tmp_path):
    workdir = write_tiny_workdir(tmp_path)
    done = snakemake(workdir, "-n", "--config", "train={seed: 3, learning_rate: 0.005}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert jobs_in_dry_run(done.stdout)["train"] == 1
    done = snakemake(workdir, "-n", "--config", "train={seed: three}")
    assert done.returncode != 0
    assert "config: train.seed: 'three' is not of type 'integer'" in done.stdout + done.stderr


@pytest.mark.parametrize("key", ["slices", "channel"])
def test_a_zarr_raw_with_slices_or_a_channel_is_refused_by_name(tmp_path, key):
    """A Zarr raw is used in place and whole: neither a slice range nor a channel applies."""
    (tmp_path / "raw.zarr").mkdir()
    (tmp_path / "raw.zarr" / "zarr.json").write_text("{}")
    value = {"slices": [0, 1], "channel": 0}[key]
    volumes = [{"name": "big", "raw": "raw.zarr", "role": "predict", key: value}]
    config = {**TINY_CONFIG, "volumes": volumes, "model": {"pretrained": "m.pt", "depth": 2},
              "segment": {"threshold": 0.5}}  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path, "-n")
    assert done.returncode != 0
    expected = f"volumes: 'big' raw is a Zarr store, used in place and whole; drop {key}"
    assert expected in done.stdout + done.stderr


def test_percentiles_out_of_order_are_refused_by_name(tmp_path):
    bad = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "normalize_percentiles": [99, 1]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    done = snakemake(tmp_path, "-n")
    assert done.returncode != 0
    expected = "config: train.normalize_percentiles: [99, 1] must be [low, high] with 0 <= low"
    assert expected in done.stdout + done.stderr


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


def test_zarr_raw_is_used_in_place_with_a_pretrained_model(finished_run, tmp_path):
    """A raw OME-Zarr is read where it is (no chunk_raw job, nothing written into it), and a
    pretrained model predicts without training."""
    from unetseg.chunk import chunk_volume
    from unetseg.data import demo_volume

    trained, _ = finished_run
    store = tmp_path / "theirs.zarr"
    write_tiff(tmp_path / "theirs.tif", demo_volume((2, 48, 40), seed=9)[0])
    chunk_volume(tmp_path / "theirs.tif", store, chunks=(1, 32, 32))
    before = sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*"))
    config = {
        **TINY_CONFIG,
        "volumes": [{"name": "theirs", "raw": str(store), "role": "predict"}],
        "model": {**TINY_CONFIG["model"], "pretrained": str(trained / "results/model/model.pt")},
        "segment": {"threshold": 0.5},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "results/model").mkdir(parents=True)  # a training of this folder's before
    (tmp_path / "results/model/validation.json").write_bytes(
        (trained / "results/model/validation.json").read_bytes()
    )
    done = snakemake(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = jobs_in_dry_run(done.stdout + done.stderr)
    assert "chunk_raw" not in jobs and "train" not in jobs and jobs["predict"] == 1, jobs
    assert "Training kept" not in done.stderr  # it did not make the model in use
    probability = io.open_zarr(tmp_path / "results/theirs/probability.zarr")
    assert probability.shape == (2, 48, 40)
    assert sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in store.rglob("*")) == before


DSB = REPO.parent / "shared" / "data" / "dsb2018-nuclei"


def test_fluorescence_images_train_per_image_and_split_touching_nuclei(tmp_path):
    """Four DSB 2018 images as a user's own data (kind images): normalised image by image, the
    segmentation tuned on the validate image by instance AP, the test image held out of every
    choice and scored per image, the instance figure drawn."""
    if not (DSB / "raw.tif").exists():
        pytest.skip(f"DSB 2018 nuclei not found at {DSB}")
    images = {"raw": str(DSB / "raw.tif"), "labels": str(DSB / "labels.tif"), "kind": "images"}
    volumes = [
        {"name": "nuclei_train", "role": "train", "slices": [0, 2], **images},
        {"name": "nuclei_val", "role": "validate", "slices": [20, 21], **images},
        {"name": "nuclei_test", "role": "test", "slices": [24, 25], **images},
    ]
    config = {
        **TINY_CONFIG,
        "volumes": volumes,
        "chunk": {"chunk_shape": [1, 520, 696]},
        "predict": {"tile_out": 252, "block_px": 768},
        "segment": {"threshold": "auto_ap50", "split_h": "auto", "min_size_px": 20},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/nuclei_test/instance_metrics.json",
               "results/report/nuclei_test/instances.png"]  # fmt: skip
    done = snakemake(tmp_path, *targets, "-p")
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"normalize": "percentile_per_slice"' in done.stdout + done.stderr
    tuned = json.loads((tmp_path / "results/segment_tuned.json").read_text())
    assert len(tuned["candidates"]) == 54 and tuned["ap50"] == max(
        c["ap50"] for c in tuned["candidates"]
    )
    log = (tmp_path / "results/logs/segment/nuclei_test.log").read_text()
    assert f"at threshold {tuned['threshold']}" in log
    instances = json.loads((tmp_path / targets[0]).read_text())
    assert [entry["slice"] for entry in instances["per_slice"]] == [0]
    assert instances["per_slice"][0]["objects"] == 39  # page 24 in the data README
    assert (tmp_path / targets[1]).stat().st_size > 10_000
    # The test volume chose nothing: neither training nor the tuning read it.
    commands = [line for line in (done.stdout + done.stderr).splitlines()
                if "unetseg train " in line or "unetseg tune-segment " in line]  # fmt: skip
    assert len(commands) == 2 and not any("nuclei_test" in line for line in commands)


def test_every_job_asks_for_more_when_retried():
    """A job SLURM killed for its memory or time is retried with more (tests/test_slurm.py runs
    it): every rule's mem_mb and runtime, and the SLURM profile's, grow with `attempt`."""
    import re

    for rules in (REPO / "workflow/rules").glob("*.smk"):
        for resource, helper in (("mem_mb", "memory_mb"), ("runtime", "runtime_minutes")):
            for value in re.findall(rf"^\s+{resource}=(.*),$", rules.read_text(), re.M):
                assert value.startswith(f"{helper}("), f"{rules.name}: {resource}={value}"
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["retries"] >= 1
    for rule, resources in profile["set-resources"].items():
        for resource in ("mem_mb", "runtime"):
            assert "attempt" in str(resources[resource]), f"profiles/slurm: {rule}.{resource}"


def test_site_settings_in_the_slurm_profile_reach_the_jobs(tmp_path):
    """`slurm_account` under the SLURM profile's default-resources (as docs/cluster-and-gpus.md
    says) is not replaced by the workflow profile (profiles/default), which Snakemake loads too."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"] = {"slurm_account": "lab_account"}
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.yaml").write_text(yaml.safe_dump(profile))
    (tmp_path / "work").mkdir()
    write_tiny_workdir(tmp_path / "work")
    done = snakemake(tmp_path / "work", "-n", "--profile", str(tmp_path / "profile"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    jobs = done.stdout.split("\nrule ")[1:]
    assert jobs and all("slurm_account=lab_account" in job for job in jobs), done.stdout[-2000:]
