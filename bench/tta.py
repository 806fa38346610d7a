"""Test-time augmentation over every ISBI model on disk, without retraining: the paper's ISBI
submission averaged 8 orientations, issue 27 asks for it in the GPU recipe, and
`predict-isbi-tta` measured it on one model only (the shipped one, whose kept step its plain
prediction chose). This predicts each finished run's held-out slices with and without it:
the shipped model and the whole-schedule runs on slices 16-19, each fold run on its fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.ensemble import SHIPPED, held_out_probability
from bench.postprocess import errors_of
from bench.recipe import ERRORS, FOLD_SLICES, ISBI, WORK
from bench.record import REPO, record

CONFIG_HELD_OUT = (16, 20)  # config/isbi2012.yaml's isbi_validate volume


def held_out_models() -> list[tuple[str, Path, tuple[int, int]]]:
    """(name, model file, held-out slices) of the shipped model and every finished run: the
    whole-schedule runs (results/bench-recipe/isbi_cpu_model) hold out the config's slices,
    a fold run (results/bench-recipe/isbi/<arm>-seed<N>/fold<k>) slices 4k to 4k+3."""
    found = [("shipped", SHIPPED, CONFIG_HELD_OUT)]
    for path in sorted((WORK / "isbi_cpu_model").glob("*/results/model/model.pt")):
        found.append((path.parents[2].name, path, CONFIG_HELD_OUT))
    for path in sorted((WORK / "isbi").glob("*-seed*/fold*/results/model/model.pt")):
        fold_folder = path.parents[2]
        fold = int(fold_folder.name.removeprefix("fold"))
        name = f"{fold_folder.parent.name}/{fold_folder.name}"
        found.append((name, path, (FOLD_SLICES * fold, FOLD_SLICES * (fold + 1))))
    return found


def mean_change(rows: list[dict], key: str) -> float:
    return round(float(np.mean([row["tta"][key] - row["plain"][key] for row in rows])), 6)


def isbi_tta_runs() -> None:
    """isbi_tta_runs: the mean change of the held-out errors that the 8-orientation average
    makes, over every finished ISBI model, and on how many it lowers each."""
    import tifffile
    import torch

    models = held_out_models()
    if not ISBI.exists() or len(models) < 2:
        print("bench isbi-tta-runs: needs ISBI and finished runs (isbi-folds, isbi-cpu-model)")
        return
    torch.set_num_threads(2)
    volume = tifffile.imread(ISBI / "train-volume.tif")
    labels = tifffile.imread(ISBI / "train-labels.tif") > 0
    rows = []
    for name, path, (start, stop) in models:
        raw, truth = volume[start:stop], labels[start:stop]
        row = {"run": name, "model": str(path.relative_to(REPO)), "slices": [start, stop - 1]}
        for label, tta in (("plain", False), ("tta", True)):
            row[label] = errors_of(truth, held_out_probability(path, raw, tta=tta))
        rows.append(row)
        print(row, flush=True)
    lowered = {key: sum(row["tta"][key] < row["plain"][key] for row in rows) for key in ERRORS}
    record("isbi_tta_runs", mean_change(rows, "rand_error"),
           f"mean change of held-out Rand error with tta, over {len(rows)} ISBI models",
           "report (sets predict.tta in the ISBI configs)",
           mean_change={key: mean_change(rows, key) for key in ERRORS},
           models_lowered=lowered, models=len(rows), runs=rows,
           prediction="fp32, one 516-px tile a slice, each slice's grey mapping")  # fmt: skip


BENCHMARKS = {"isbi-tta-runs": isbi_tta_runs}
