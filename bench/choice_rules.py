"""Would another rule for choosing the kept network beat training's (the validation with the
lowest selection error)? Late in an ISBI run the validation Rand error swings from one
validation to the next, so a rule that trusts one validation less may choose better. Each
rule is scored as training scores its own choice (unetseg/choice.py): every validation slice by
the network the rule chose on the other slices (leave one slice out), and, more harshly, every
half of the slices by the network chosen on the other half.

The runs are those the selection benchmarks left (bench/selection.py): their validations'
counts, slice by slice. Nothing is trained or predicted here.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.record import record
from bench.selection import keepable, log_events
from unetseg import choice

RUNS = Path("results/bench-recipe")
# (run name, its folder, where its validations are): "scores" is bench/selection.py's
# scores.json (each network predicted by the workflow's predict step, whose counts equal
# training's to 1e-5: isbi-selection-by-training); "checkpoint" is training's own record
ISBI_RUNS = (
    ("bf16 seed 1", "isbi_selection/paper_bf16_14k-seed1", "scores"),
    ("bf16 seed 2", "isbi_selection/paper_bf16_14k-seed2", "scores"),
    ("bf16 seed 0", "isbi_choice/paper_bf16_14k-seed0", "checkpoint"),
    ("fp32 seed 0", "isbi_choice/paper-seed0", "checkpoint"),
    ("fp32 seed 1", "isbi_choice/paper-seed1", "checkpoint"),
)
DSB_RUNS = (
    ("dsb seed 0", "dsb_choice/group_ap50-seed0", "checkpoint"),
    ("dsb seed 1", "dsb_choice/group_ap50-seed1", "checkpoint"),
)


def moving_mean(values: np.ndarray, width: int) -> np.ndarray:
    """Each value's mean with its neighbours, `width` values centred on it (fewer at the ends)."""
    half = width // 2
    return np.array([values[max(0, i - half) : i + half + 1].mean() for i in range(len(values))])


def curve(validations: choice.Validations, slices: list[int], key: str) -> np.ndarray:
    """The selection error (`key`: a keep_by, or pixel_error) of every validation on `slices`."""
    figures = [choice.errors([counts[s] for s in slices]) for counts in validations.counts]
    if key == "pixel_error":
        return np.array([f["pixel_error"] for f in figures])
    return np.array([choice.selection_error(f, key) for f in figures])


# rule(validations, slices, keep_by) -> the index of the validation kept
Rule = Callable[[choice.Validations, list[int], str], int]


def lowest(scores: np.ndarray, validations: choice.Validations) -> int:
    """The keepable validation with the lowest score, the later on a tie (as training keeps)."""
    return validations.lowest(lambda i: scores[i])


RULES: dict[str, Rule] = {
    "best": lambda v, s, k: v.chosen(s, k),  # training's rule
    "moving_mean_3": lambda v, s, k: lowest(moving_mean(curve(v, s, k), 3), v),
    "moving_mean_5": lambda v, s, k: lowest(moving_mean(curve(v, s, k), 5), v),
    "best_pixel_error": lambda v, s, k: lowest(curve(v, s, "pixel_error"), v),
    "last": lambda v, s, k: max(i for i, ok in enumerate(v.keepable) if ok),
}


def scored(validations: choice.Validations, keep_by: str, rule: Rule) -> dict:
    """The rule's choices scored on slices that did not make them: each slice left out in turn
    (pooled, as training's estimate), and each half of the slices chosen on the other half (the
    mean over the splits)."""
    every = list(range(len(validations.counts[0])))
    left_out = [rule(validations, [o for o in every if o != s], keep_by) for s in every]
    estimate = choice.errors(
        [validations.counts[i][s] for s, i in zip(every, left_out, strict=True)]
    )
    halves = []
    for choosing in itertools.combinations(every, len(every) // 2):
        kept = rule(validations, list(choosing), keep_by)
        halves.append(choice.errors([validations.counts[kept][s] for s in every
                                     if s not in choosing]))  # fmt: skip
    key = "ap50" if keep_by == "ap50" else "rand_error"
    return {
        "leave_one_slice_out": {"steps": [validations.steps[i] for i in left_out],
                                "pixel_error": estimate["pixel_error"], key: estimate[key]},
        f"halves_mean_{key}": float(np.mean([h[key] for h in halves])),
    }  # fmt: skip


def from_scores(folder: Path) -> choice.Validations:
    """A selection run's validations from scores.json, keepable as its log's event says."""
    scores = json.loads((folder / "scores.json").read_text())
    events = log_events(folder / "results/model/train_log.tsv")
    validations = choice.Validations()
    for key in sorted(key for key in scores if key.isdigit()):
        counts = [choice.SliceCounts(np.array(c["pixel"]), np.array(c["rand_n2"]))
                  for c in scores[key]]  # fmt: skip
        step = int(key)
        validations.add(step, counts, keepable(events[step]))
    return validations


def from_checkpoint(folder: Path) -> choice.Validations:
    import torch

    path = folder / "results/model/checkpoint.pt"
    validations = choice.Validations()
    validations.load_state_dict(
        torch.load(path, map_location="cpu", weights_only=False)["validations"]
    )
    return validations


def load(runs) -> list[tuple[str, choice.Validations, str]]:
    """(name, validations, keep_by) of each run in `runs` found on disk."""
    import torch

    found = []
    for name, folder, source in runs:
        path = RUNS / folder
        if not (path / "results/model/model.pt").exists():
            print(f"{name}: no finished run in {path}; left out", flush=True)
            continue
        validations = from_scores(path) if source == "scores" else from_checkpoint(path)
        keep_by = torch.load(path / "results/model/model.pt", map_location="cpu",
                             weights_only=True)["train_config"]["keep_by"]  # fmt: skip
        found.append((name, validations, keep_by))
    return found


def choice_rules() -> None:
    for dataset, runs, key in (("isbi", ISBI_RUNS, "rand_error"), ("dsb", DSB_RUNS, "ap50")):
        loaded = load(runs)
        if not loaded:
            continue
        table = {rule_name: {name: scored(validations, keep_by, rule)
                             for name, validations, keep_by in loaded}
                 for rule_name, rule in RULES.items()}  # fmt: skip
        print(json.dumps(table, indent=1), flush=True)
        unit = f"{'AP50' if key == 'ap50' else 'Rand error'}, mean of {len(loaded)} runs"
        for rule_name, per_run in table.items():
            values = [figures["leave_one_slice_out"][key] for figures in per_run.values()]
            halves = [figures[f"halves_mean_{key}"] for figures in per_run.values()]
            record(f"{dataset}_choice_rule_{rule_name}_{key}_leave_one_out",
                   round(float(np.mean(values)), 4), unit, "report only",
                   rule=rule_name, per_run=dict(zip(per_run, values, strict=True)),
                   halves_mean=round(float(np.mean(halves)), 4), runs=per_run)  # fmt: skip


BENCHMARKS = {"choice-rules": choice_rules}
