"""An ensemble of the models trained on ISBI's config split, without retraining: issue 27 names
"an ensemble of folds" among the levers aimed at topology. Models trained on other folds saw
the slices that score them, so this averages the probabilities of models trained on the same
slices (0-15) with different recipes: the shipped model and the whole-schedule candidates for it
(results/bench-recipe/isbi_cpu_model), on the held-out slices 16-19."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from bench.postprocess import errors_of
from bench.recipe import ERRORS, ISBI, WORK
from bench.record import REPO, record

HELD_OUT = slice(16, 20)  # config/isbi2012.yaml's isbi_validate volume
TILE_OUT = 516  # the config's predict.tile_out: one tile a 512-px slice
SHIPPED = REPO / "models/isbi2012-cpu-16ch/model.pt"


# The whole-schedule runs averaged with the shipped model, named so that a rerun averages the
# recorded members, whatever other runs have finished since (BENCHMARKS.md, isbi-ensemble)
RUNS = ("ema-seed0", "paper_bf16_10k-seed0")


def members() -> dict[str, Path]:
    """The shipped model and those of RUNS that have finished."""
    found = {"shipped": SHIPPED}
    for run in RUNS:
        path = WORK / "isbi_cpu_model" / run / "results/model/model.pt"
        if path.exists():
            found[run] = path
    return found


def held_out_probability(model_path: Path, raw: np.ndarray, tta: bool = False) -> np.ndarray:
    """Each held-out slice predicted as the workflow predicts it (one 516-px tile, each slice's
    grey mapping; with `tta`, the mean over the 8 flips and quarter turns), in fp32 so that the
    members differ by their weights alone."""
    from unetseg import predict

    model, checkpoint = predict.load_model(str(model_path))
    mappings = predict.model_grey_mappings(raw, checkpoint)
    return np.stack([
        predict.predict_block(model, raw, z, (0, raw.shape[1]), (0, raw.shape[2]), TILE_OUT,
                              tta=tta, grey_mapping=mappings[z])
        for z in range(len(raw))
    ]).astype(np.float32)  # fmt: skip


def isbi_ensemble() -> None:
    """isbi_ensemble: held-out errors of the mean probability of every pair of members and of
    all of them, beside each member's own."""
    import tifffile
    import torch

    paths = members()
    if not ISBI.exists() or len(paths) < 2:
        print("bench isbi-ensemble: needs ISBI and a finished run of RUNS; skipped")
        return
    torch.set_num_threads(2)
    raw = tifffile.imread(ISBI / "train-volume.tif")[HELD_OUT]
    truth = tifffile.imread(ISBI / "train-labels.tif")[HELD_OUT] > 0
    probabilities = {name: held_out_probability(path, raw) for name, path in paths.items()}
    alone = {name: errors_of(truth, p) for name, p in probabilities.items()}
    groups = [*combinations(paths, 2)] + ([tuple(paths)] if len(paths) > 2 else [])
    means = {"+".join(group): errors_of(truth, np.mean([probabilities[n] for n in group], axis=0))
             for group in groups}  # fmt: skip
    for name, figures in {**alone, **means}.items():
        print(name, figures, flush=True)
    everyone = means["+".join(paths)]
    best_alone = min(alone.values(), key=lambda figures: figures["rand_error"])
    record("isbi_ensemble", everyone["rand_error"],
           f"held-out Rand error of the mean of {len(paths)} models (slices 16-19)",
           "report (adopted only if it beats the best member on Rand and warping)",
           members={name: str(path.relative_to(REPO)) for name, path in paths.items()},
           alone=alone, ensembles=means,
           beats_best_member=all(everyone[key] < best_alone[key] for key in ERRORS))  # fmt: skip


BENCHMARKS = {"isbi-ensemble": isbi_ensemble}
