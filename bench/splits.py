"""Where the held-out Rand error of ISBI's whole-schedule runs comes from: cells split by false
membrane or merged through missing membrane. The kept model of each finished run in
results/bench-recipe/isbi_cpu_model (and the shipped model), and the run's last weights (from its
checkpoint), predict slices 16-19 as the workflow does; at the threshold with the best Rand
F-score, the Rand precision (lowered by merges: pixel pairs predicted in one cell that the truth
separates), the Rand recall (lowered by splits) and the warping error's split and merger pixels
there. Prediction only, no training: a few minutes on 2 cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.ensemble import HELD_OUT, SHIPPED, held_out_probability
from bench.recipe import ISBI, WORK
from bench.record import record


def split_merge(truth: np.ndarray, probability: np.ndarray) -> dict:
    """Rand error, precision and recall (N² counts, as METRICS.md's Rand error) of a stack at its
    best threshold, with the warping error's split and merger pixels at that threshold."""
    from unetseg import evaluate

    thresholds = evaluate.PIXEL_RAND_THRESHOLDS
    slices = list(zip(truth, probability, strict=True))
    counts = sum(evaluate.rand_counts(t, p, thresholds)[0] for t, p in slices)
    best_f, best, _ = evaluate.best_f(counts)  # the metric's own threshold choice
    tp, fp, fn = counts[best]
    splits, mergers = sum(evaluate.warping_counts(t, p, [thresholds[best]])[0] for t, p in slices)
    return {
        "rand_error": round(float(1 - best_f), 4),
        "threshold": float(thresholds[best]),
        "precision": round(float(tp / (tp + fp)), 4),
        "recall": round(float(tp / (tp + fn)), 4),
        "split_px": int(splits),
        "merger_px": int(mergers),
    }


def last_model(kept: Path, into: Path) -> Path | None:
    """The kept model file with the weights of the checkpoint beside it (the run's last step),
    saved in the folder `into`; None without a checkpoint (the shipped model has none)."""
    import torch

    if not (kept.parent / "checkpoint.pt").exists():
        return None
    checkpoint = torch.load(kept.parent / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = torch.load(kept, map_location="cpu", weights_only=True)
    path = into / f"{kept.parents[2].name}-last.pt"  # a file per run: load_model caches by path
    torch.save(
        {**model, "model_state": checkpoint["model_state"], "step": checkpoint["step"]}, path
    )
    return path


def kept_models() -> dict[str, Path]:
    """The shipped model and the kept model of every finished whole-schedule run."""
    found = {"shipped": SHIPPED}
    for path in sorted((WORK / "isbi_cpu_model").glob("*-seed*/results/model/model.pt")):
        found[path.parents[2].name] = path
    return found


def isbi_splits() -> None:
    """isbi_split_merge: the mean Rand recall of the kept models (splits lower it), with each
    run's kept and last figures."""
    import tempfile

    import tifffile
    import torch

    if not ISBI.exists():
        print("bench isbi-splits: no ISBI data; skipped")
        return
    torch.set_num_threads(2)
    raw = tifffile.imread(ISBI / "train-volume.tif")[HELD_OUT]
    truth = tifffile.imread(ISBI / "train-labels.tif")[HELD_OUT] > 0
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, kept in kept_models().items():
            models = {"kept": kept, "last": last_model(kept, Path(scratch))}
            figures[name] = {
                which: {"step": torch.load(path, weights_only=True)["step"],
                        **split_merge(truth, held_out_probability(path, raw))}
                for which, path in models.items() if path is not None
            }  # fmt: skip
            print(name, figures[name], flush=True)
    recalls = [run["kept"]["recall"] for run in figures.values()]
    record("isbi_split_merge", round(float(np.mean(recalls)), 4),
           f"mean Rand recall (splits lower it) of {len(recalls)} kept models (slices 16-19)",
           "report (which error a topology lever should aim at)", runs=figures)  # fmt: skip


BENCHMARKS = {"isbi-splits": isbi_splits}
