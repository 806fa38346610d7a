"""Sparse annotation: the demo trained on a quarter of each train slice, the rest marked with an
ignore label, against the usual ways round it (the rest called background; the annotated boxes
cut out as volumes of their own) and against dense labels. The real workflow, same network,
steps and held-out slices; errors on the held-out slices, which are labelled densely."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import yaml

from bench.record import REPO, record
from bench.workflow import snakemake
from unetseg.data import demo_volume
from unetseg.evaluate import PIXEL_RAND_THRESHOLDS

TRAIN_SLICES = 6  # of the demo's 8, as config/config.yaml: slices 6 and 7 are held out
BOX_PX = 128  # each train slice is annotated in one 128 x 128 box: 25 % of its 256 x 256 px
IGNORE = 128
SEEDS = (0, 1, 2, 3)


def annotation_boxes(shape, box_px: int = BOX_PX) -> list[tuple[slice, slice]]:
    """One box of box_px a side at a random place in each slice of `shape` (seeded)."""
    rng = np.random.default_rng(7)
    corners = rng.integers(0, np.array(shape[1:]) - box_px + 1, (shape[0], 2))
    return [(slice(y, y + box_px), slice(x, x + box_px)) for y, x in corners]


def write(path: Path, array: np.ndarray) -> str:
    tifffile.imwrite(path, array, photometric="minisblack")
    return str(path)


def train_volumes(folder: Path, raw, labels, variant: str) -> list[dict]:
    """The train volumes of one way of using the boxes' annotation."""
    boxes = annotation_boxes((TRAIN_SLICES, *raw.shape[1:]))
    if variant == "dense":
        return [{"name": "train", "raw": write(folder / "raw.tif", raw),
                 "labels": write(folder / "labels.tif", labels), "role": "train",
                 "slices": [0, TRAIN_SLICES]}]  # fmt: skip
    if variant == "crops":
        return [
            {"name": f"crop{z}", "raw": write(folder / f"crop{z}_raw.tif", raw[(z, *box)]),
             "labels": write(folder / f"crop{z}_labels.tif", labels[(z, *box)]), "role": "train"}
            for z, box in enumerate(boxes)
        ]  # fmt: skip
    outside = np.ones(raw.shape, bool)
    for z, box in enumerate(boxes):
        outside[(z, *box)] = False
    marked = np.where(outside, IGNORE if variant == "ignore_label" else 0, labels)
    volume = {"name": "train", "raw": write(folder / "raw.tif", raw),
              "labels": write(folder / f"{variant}.tif", marked.astype(np.uint8)), "role": "train",
              "slices": [0, TRAIN_SLICES]}  # fmt: skip
    if variant == "ignore_label":
        volume["ignore_label"] = IGNORE
    return [volume]


def held_out_errors(variant: str, seed: int, raw, labels) -> dict:
    return demo_held_out_errors(
        raw, labels, lambda workdir: train_volumes(workdir, raw, labels, variant), {"seed": seed}
    )


def demo_held_out_errors(raw, labels, train_volumes_in, train_settings: dict) -> dict:
    """The demo workflow's errors on slices TRAIN_SLICES on of (raw, labels), trained on the
    volumes that `train_volumes_in(folder)` writes, with the demo's train settings updated by
    `train_settings`."""
    with tempfile.TemporaryDirectory(prefix="unetseg-bench-") as folder:
        workdir = Path(folder)
        config = yaml.safe_load((REPO / "config/config.yaml").read_text())
        config["volumes"] = [
            *train_volumes_in(workdir),
            {"name": "held_out", "raw": write(workdir / "raw.tif", raw),
             "labels": write(workdir / "labels.tif", labels), "role": "validate",
             "slices": [TRAIN_SLICES, raw.shape[0]]},
        ]  # fmt: skip
        config["train"].update(train_settings)
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        snakemake(workdir, "results/held_out/metrics.json", config=workdir / "config.yaml")
        metrics = json.loads((workdir / "results/held_out/metrics.json").read_text())
    at_half = PIXEL_RAND_THRESHOLDS.index(0.5)
    return {
        **{key: metrics[key] for key in ("pixel_error", "rand_error", "warping_error")},
        "rand_best_threshold": round(metrics["rand"]["best_threshold"], 2),
        "pixel_error_at_0.5": 1 - metrics["pixel"]["f_scores"][at_half],
    }


def sparse_labels() -> None:
    """sparse_labels_<variant>: held-out Rand error (mean over 4 training seeds) of the demo
    network trained with each way of using 25 % annotated train slices, and with dense labels."""
    raw, labels = demo_volume((8, 256, 256), seed=0)
    results = {
        variant: [held_out_errors(variant, seed, raw, labels) for seed in SEEDS]
        for variant in ("ignore_label", "background", "crops", "dense")
    }
    notes = {
        "ignore_label": "the rest of each slice marked with ignore_label (unetseg)",
        "background": "the rest of each slice labelled background (0), no ignore label",
        "crops": "the 6 annotated 128 x 128 boxes given as 6 train volumes",
        "dense": "every pixel of the 6 train slices labelled (the demo)",
    }
    for variant, runs in results.items():
        record(
            f"sparse_labels_{variant}",
            round(float(np.mean([run["rand_error"] for run in runs])), 4),
            "Rand error (held out)",
            "report only",
            pixel_error=[round(run["pixel_error"], 4) for run in runs],
            rand_error=[round(run["rand_error"], 4) for run in runs],
            warping_error=[round(run["warping_error"], 6) for run in runs],
            rand_best_threshold=[run["rand_best_threshold"] for run in runs],
            pixel_error_at_threshold_half=[round(run["pixel_error_at_0.5"], 4) for run in runs],
            seeds=list(SEEDS),
            annotated="25 % of each of 6 train slices (one 128 x 128 box)",
            network="demo: depth 3, 16 channels, 300 steps",
            note=notes[variant],
        )


ISBI_TRAIN_SLICES = 16  # of the 20 labelled ISBI slices; 16-19 are held out, as isbi2012.yaml
ISBI_BOX_PX = 256  # one 256 x 256 box per 512 x 512 slice: 25 %, as the demo's


def sparse_labels_isbi(steps: int = 3000) -> None:
    """sparse_labels_isbi_<variant>: held-out Rand error on ISBI 2012 slices 16-19 of the CPU
    network (config/isbi2012.yaml with isbi2012-cpu.yaml, `steps` steps) trained on slices 0-15
    with one 256 x 256 box of each annotated and the rest marked (ignore_label), against dense
    labels; one seed each (an hour of 2 cores for both). Skipped without the ISBI data."""
    from bench.train import ISBI

    if not (ISBI / "train-volume.tif").exists():
        print(f"bench sparse-labels-isbi: no ISBI 2012 data at {ISBI}; skipped")
        return
    raw = tifffile.imread(ISBI / "train-volume.tif")
    labels = tifffile.imread(ISBI / "train-labels.tif")
    overlay = {}
    for name in ("isbi2012.yaml", "isbi2012-cpu.yaml"):
        for key, value in yaml.safe_load((REPO / "config" / name).read_text()).items():
            overlay[key] = {**overlay.get(key, {}), **value} if isinstance(value, dict) else value
    overlay["train"]["steps"] = steps
    for variant in ("ignore_label", "dense"):
        with tempfile.TemporaryDirectory(prefix="unetseg-sparse-isbi-") as folder:
            workdir = Path(folder)
            marked = labels[:ISBI_TRAIN_SLICES].copy()
            train = {"name": "isbi_train", "raw": write(workdir / "raw.tif", raw[:ISBI_TRAIN_SLICES]),
                     "role": "train"}  # fmt: skip
            if variant == "ignore_label":
                outside = np.ones(marked.shape, bool)
                for z, box in enumerate(annotation_boxes(marked.shape, ISBI_BOX_PX)):
                    outside[(z, *box)] = False
                marked[outside] = IGNORE
                train["ignore_label"] = IGNORE
            train["labels"] = write(workdir / "labels.tif", marked)
            validate = {"name": "isbi_validate", "raw": str(ISBI / "train-volume.tif"),
                        "labels": str(ISBI / "train-labels.tif"), "role": "validate",
                        "slices": [ISBI_TRAIN_SLICES, len(raw)]}  # fmt: skip
            config = {**overlay, "results": "results", "volumes": [train, validate]}
            (workdir / "config.yaml").write_text(yaml.safe_dump(config))
            seconds = snakemake(workdir, "results/isbi_validate/metrics.json",
                                config=workdir / "config.yaml")  # fmt: skip
            metrics = json.loads((workdir / "results/isbi_validate/metrics.json").read_text())
        record(f"sparse_labels_isbi_{variant}", round(metrics["rand_error"], 4),
               "Rand error (ISBI slices 16-19)", "report only",
               pixel_error=round(metrics["pixel_error"], 4),
               warping_error=round(metrics["warping_error"], 6),
               rand_best_threshold=round(metrics["rand"]["best_threshold"], 2),
               annotated="25 % of each of slices 0-15 (one 256 x 256 box)"
               if variant == "ignore_label" else "every pixel of slices 0-15",
               network=f"isbi2012-cpu: depth 4, 16 channels, {steps} steps, seed 0",
               workflow_seconds=round(seconds))  # fmt: skip


BENCHMARKS = {"sparse-labels": sparse_labels, "sparse-labels-isbi": sparse_labels_isbi}
