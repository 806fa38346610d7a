"""Post-processing the held-out probabilities of finished fold runs, without retraining:
does filling small holes in the predicted cells (false membrane inside a cell: organelles,
vesicles) lower the ISBI errors? Issue 27 named "removing small components, filling small
holes" as tried once by hand on GPU models; this measures it on every fold run on disk."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from bench.recipe import ERRORS, ISBI, WORK
from bench.record import record


def close_holes(probability: np.ndarray, area_px: int) -> np.ndarray:
    """Grey-level area closing of one slice's interior probability: at every threshold, the
    predicted membrane's components (8-connected, the dual of the metrics' 4-connected cells,
    so a 1-px diagonal membrane is one component) smaller than `area_px` become interior.
    One map for every threshold the metrics sweep, as remove_small_holes is for one. In float64,
    where skimage's inversion of the grey values is exact for float32 ones (in float32 it moves
    them by an ulp)."""
    from skimage.morphology import area_closing

    closed = area_closing(probability.astype(np.float64), area_px, connectivity=2)
    return closed.astype(probability.dtype)


def fold_runs() -> list[Path]:
    """The held-out folders of the finished fold runs under results/bench-recipe/isbi."""
    return sorted(folder.parent for folder in
                  (WORK / "isbi").glob("*-seed*/fold*/results/isbi_validate/metrics.json"))  # fmt: skip


def errors_of(truth: np.ndarray, probability: np.ndarray) -> dict:
    from unetseg import evaluate

    figures = evaluate.evaluate_arrays(truth, probability, workers=2)
    return {key: round(float(figures[key]), 6) for key in ERRORS}


def isbi_fill_holes(areas=(200, 1000, 3000)) -> None:
    """isbi_fill_holes: held-out errors of each finished fold run with small holes filled
    (close_holes) against the run's own, and how much of the ground truth the same closing
    would change (real small cells enclosed by a ring of membrane are holes too)."""
    import tifffile

    from unetseg.io import open_zarr

    runs = fold_runs()
    if not runs or not ISBI.exists():
        print("bench isbi-fill-holes: no finished fold runs (run isbi-folds first); skipped")
        return
    labels = tifffile.imread(ISBI / "train-labels.tif")[:20] > 0
    truth_changed = {area: int(sum(np.count_nonzero(close_holes(s.astype(np.uint8), area) != s)
                                   for s in labels)) for area in areas}  # fmt: skip
    rows = []
    for folder in runs:
        truth = np.asarray(open_zarr(folder / "labels.zarr"))
        probability = np.asarray(open_zarr(folder / "probability.zarr")).astype(np.float32)
        own = json.loads((folder / "metrics.json").read_text())
        row = {"run": str(folder.relative_to(WORK).parents[1]),
               "none": {key: round(float(own[key]), 6) for key in ERRORS}}  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # area_closing on float input
            for area in areas:
                closed = np.stack([close_holes(s, area) for s in probability])
                row[str(area)] = errors_of(truth, closed)
        rows.append(row)
        print(row, flush=True)
    change = {str(area): {key: round(float(np.mean([r[str(area)][key] - r["none"][key]
                                                     for r in rows])), 6) for key in ERRORS}
              for area in areas}  # fmt: skip
    better = {str(area): sum(r[str(area)]["rand_error"] < r["none"]["rand_error"]
                             and r[str(area)]["warping_error"] <= r["none"]["warping_error"]
                             for r in rows) for area in areas}  # fmt: skip
    record("isbi_fill_holes", change[str(areas[1])]["rand_error"],
           f"mean change of held-out Rand error, holes under {areas[1]} px filled", "report only",
           runs=len(rows), mean_change=change, rand_and_warping_better=better,
           ground_truth_pixels_changed_of_20_slices=truth_changed, rows=rows)  # fmt: skip


BENCHMARKS = {"isbi-fill-holes": isbi_fill_holes}
