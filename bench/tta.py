"""Test-time augmentation over every ISBI model on disk, without retraining: the paper's ISBI
submission averaged 8 orientations, issue 27 asks for it in the GPU recipe, and
`predict-isbi-tta` measured it on one model only (the shipped one, whose kept step its plain
prediction chose). This predicts each finished run's held-out slices with and without it:
the shipped model and the whole-schedule runs on slices 16-19, each fold run on its fold. A
kept model was chosen by its plain prediction of those very slices, which favours the plain
prediction, so each whole-schedule run's last step (its checkpoint, chosen by nobody) is
predicted too."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.ensemble import SHIPPED, held_out_probability
from bench.postprocess import errors_of
from bench.recipe import ERRORS, FOLD_SLICES, ISBI, WORK
from bench.record import record
from bench.splits import last_model

CONFIG_HELD_OUT = (16, 20)  # config/isbi2012.yaml's isbi_validate volume


def held_out_models() -> list[tuple[str, Path, tuple[int, int], str]]:
    """(name, model file, held-out slices, kind) of the shipped model and every finished run:
    the whole-schedule runs' kept models (results/bench-recipe/isbi_cpu_model) hold out the
    config's slices, a fold run (results/bench-recipe/isbi/<arm>-seed<N>/fold<k>) slices 4k to
    4k+3."""
    found = [("shipped", SHIPPED, CONFIG_HELD_OUT, "kept")]
    for path in sorted((WORK / "isbi_cpu_model").glob("*/results/model/model.pt")):
        found.append((path.parents[2].name, path, CONFIG_HELD_OUT, "kept"))
    for path in sorted((WORK / "isbi").glob("*-seed*/fold*/results/model/model.pt")):
        fold_folder = path.parents[2]
        fold = int(fold_folder.name.removeprefix("fold"))
        name = f"{fold_folder.parent.name}/{fold_folder.name}"
        found.append((name, path, (FOLD_SLICES * fold, FOLD_SLICES * (fold + 1)), "fold run"))
    return found


def distinct(models: list[tuple]) -> list[tuple]:
    """The models (name, file, ...) whose weights no earlier one has: runs that trained alike
    keep alike models (the run that made the shipped model; a tta run and the same seed's plain
    one, which differ only in how they validate), and each is counted once."""
    import torch

    kept, seen = [], []
    for model in models:
        state = torch.load(model[1], weights_only=True)["model_state"]
        if not any(same_weights(state, other) for other in seen):
            kept.append(model)
            seen.append(state)
    return kept


def same_weights(mine: dict, theirs: dict) -> bool:
    import torch

    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def own_last_step(kept: Path) -> bool:
    """Whether the run's checkpoint holds a last step other than its kept model: not where the
    kept model is the last step, nor where the run averaged its weights (the checkpoint's
    model_state is then not what it would keep)."""
    import torch

    checkpoint = torch.load(kept.parent / "checkpoint.pt", weights_only=True)
    kept_step = torch.load(kept, weights_only=True)["step"]
    return checkpoint["step"] != kept_step and checkpoint.get("average_state") is None


def mean_change(rows: list[dict], key: str) -> float:
    return round(float(np.mean([row["tta"][key] - row["plain"][key] for row in rows])), 6)


def summarised(rows: list[dict]) -> dict:
    """Mean change of each error with tta, and on how many models it fell."""
    return {"models": len(rows),
            "mean_change": {key: mean_change(rows, key) for key in ERRORS},
            "lowered": {key: sum(r["tta"][key] < r["plain"][key] for r in rows) for key in ERRORS}}  # fmt: skip


def isbi_tta_runs() -> None:
    """isbi_tta_runs: the mean change of the held-out errors that the 8-orientation average
    makes, and on how many models it lowers each: over the whole-schedule runs' kept models
    (chosen by their plain validation on the slices that score them), and over the models
    chosen by nobody (those runs' last steps, the fold runs)."""
    import tempfile

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
    with tempfile.TemporaryDirectory() as folder:
        last_steps = [(f"{name} (last step)", last_model(path, Path(folder)), held_out, "last step")
                      for name, path, held_out, kind in models[1:]  # the shipped has no checkpoint
                      if kind == "kept" and own_last_step(path)]  # fmt: skip
        for name, path, (start, stop), kind in distinct(models + last_steps):
            raw, truth = volume[start:stop], labels[start:stop]
            row = {"run": name, "slices": [start, stop - 1], "kind": kind}
            for label, tta in (("plain", False), ("tta", True)):
                row[label] = errors_of(truth, held_out_probability(path, raw, tta=tta))
            rows.append(row)
            print(row, flush=True)
    by_kind = {kind: summarised([row for row in rows if row["kind"] == kind])
               for kind in ("kept", "last step", "fold run")}  # fmt: skip
    unchosen = summarised([row for row in rows if row["kind"] != "kept"])
    record("isbi_tta_runs", unchosen["mean_change"]["rand_error"],
           f"mean change of held-out Rand error with tta, over {unchosen['models']} ISBI models "
           "chosen by nobody (last steps, fold runs)",
           "report (sets predict.tta in the ISBI configs)", chosen_by_nobody=unchosen,
           by_kind=by_kind, runs=rows,
           prediction="fp32, one 516-px tile a slice, each slice's grey mapping")  # fmt: skip


def paired_validations(plain_log: Path, tta_log: Path) -> dict:
    """Two runs' validations at the steps where they trained alike (the same loss: the runs
    differ only in how they validate until a rollback that one makes and the other does not):
    how often, and by how much, the average of 8 orientations scored lower than the plain
    prediction of the same model."""
    from unetseg import report

    plain, tta = report.read_tsv(plain_log), report.read_tsv(tta_log)
    shared = min(len(plain["step"]), len(tta["step"]))
    alike = 0
    while (alike < shared and plain["step"][alike] == tta["step"][alike]
           and plain["loss"][alike] == tta["loss"][alike]):  # fmt: skip
        alike += 1
    if not alike:
        raise SystemExit(f"bench isbi-tta-validations: {plain_log} and {tta_log} trained apart")
    figures = {"steps_alike": alike, "last_step_alike": int(plain["step"][alike - 1])}
    difference = {
        key: tta[key][:alike] - plain[key][:alike] for key in ("rand_error", "pixel_error")
    }
    for key, change in difference.items():
        figures[key] = {"mean_change": round(float(np.mean(change)), 6),
                        "lower_with_tta": int(np.sum(change < 0)),
                        "lowest_plain": round(float(np.min(plain[key][:alike])), 6),
                        "lowest_tta": round(float(np.min(tta[key][:alike])), 6)}  # fmt: skip
    # the schedule's halves apart: a half-trained network and a trained one
    rand = difference["rand_error"]
    first_half = plain["step"][:alike] <= plain["step"][-1] / 2
    figures["rand_error_by_half"] = {
        half: {"steps": int(np.sum(chosen)), "lower_with_tta": int(np.sum(rand[chosen] < 0)),
               "mean_change": round(float(np.mean(rand[chosen])), 6) if chosen.any() else None}
        for half, chosen in (("first", first_half), ("second", ~first_half))
    }  # fmt: skip
    return figures


def isbi_tta_validations(arms=("paper_bf16_10k", "paper_bf16_10k_tta"), seeds=(1, 2)) -> None:
    """isbi_tta_validations: every validated step of a whole-schedule run, validated plain (one
    run) and with the 8 orientations averaged (the same seed's run with predict.tta, which
    trains alike): on how many steps the average scored the lower Rand error."""
    logs = {seed: [WORK / "isbi_cpu_model" / f"{arm}-seed{seed}/results/model/train_log.tsv"
                   for arm in arms] for seed in seeds}  # fmt: skip
    if not all(path.exists() for pair in logs.values() for path in pair):
        print("bench isbi-tta-validations: needs both arms' runs (isbi-cpu-model-bf16-tta)")
        return
    pairs = {seed: paired_validations(*logs[seed]) for seed in seeds}
    for seed, figures in pairs.items():
        print(seed, figures, flush=True)
    steps = sum(figures["steps_alike"] for figures in pairs.values())
    lower = sum(figures["rand_error"]["lower_with_tta"] for figures in pairs.values())
    record("isbi_tta_validations", lower,
           f"validated steps of {steps} whose Rand error the 8-orientation average lowered",
           "report (sets predict.tta in the ISBI configs)", arms=list(arms),
           seeds={str(seed): figures for seed, figures in pairs.items()},
           data="ISBI 2012 slices 16-19, validated in training (bf16)")  # fmt: skip


BENCHMARKS = {"isbi-tta-runs": isbi_tta_runs, "isbi-tta-validations": isbi_tta_validations}
