"""The report's front page: the workflow description Snakemake shows first, with each evaluated
volume's errors beside the paper's Table 1 and its instance AP, so a reader sees the result
before opening a category. Light (no NumPy): the Snakefile builds it while parsing."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Paper Table 1 (ISBI 2012 leaderboard, 6 March 2015): warping, Rand, pixel error.
PAPER_TABLE_1 = {
    "human": (0.000005, 0.0021, 0.0010),
    "u-net (paper)": (0.000353, 0.0382, 0.0611),
    "DIVE-SCI": (0.000355, 0.0305, 0.0584),
    "IDSIA": (0.000420, 0.0504, 0.0613),
}
COLUMNS = ("volume", "held out from", "pixel error", "Rand error", "warping error", "AP@0.5",
           "mean AP")  # fmt: skip
# What an evaluated volume was kept out of: a validate volume chose the kept model (and an auto
# threshold), so its figures are the best of many tries on it; a test volume chose nothing.
HELD_OUT_FROM = {"validate": "training (it chose the model)", "test": "training and choosing"}


def volume_rows(results: str | os.PathLike, roles: dict[str, str]) -> list[list[str]]:
    """One row per volume (name: role) whose metrics exist: what it was held out from, its
    errors and, with instance metrics, its AP."""
    rows = []
    for name, role in roles.items():
        folder = Path(results) / name
        metrics_path, instances_path = folder / "metrics.json", folder / "instance_metrics.json"
        if not metrics_path.exists():
            continue
        metrics = json.loads(metrics_path.read_text())
        instances = json.loads(instances_path.read_text()) if instances_path.exists() else {}
        rows.append([
            name, HELD_OUT_FROM[role], f"{metrics['pixel_error']:.4f}",
            f"{metrics['rand_error']:.4f}", f"{metrics['warping_error']:.6f}",
            f"{instances['ap50']:.3f}" if "ap50" in instances else "–",
            f"{instances['mean_ap']:.3f}" if "mean_ap" in instances else "–",
        ])  # fmt: skip
    return rows


def choice_sentence(summary: dict) -> str:
    """What training's validation says of the kept network (unetseg/choice.py's summary, the
    train step's validation.json): its errors on the slices that chose it, beside each slice
    scored by the network the other slices chose."""
    kept, estimate = summary.get("kept"), summary.get("leave_one_slice_out")
    if not summary["slices"]:
        return "no validate volumes: the last network is kept"
    if kept is None:
        return "no validation kept a network"
    n = len(summary["slices"])
    text = (f"kept step {kept['step']}: validation {figures(kept)} on "
            f"{'the slice' if n == 1 else f'the {n} slices'} that chose it")  # fmt: skip
    if estimate is None:
        return text + " (one slice: no leave-one-slice-out estimate)"
    return f"{text}; each slice scored by the network the other slices chose: {figures(estimate)}"


def figures(errors: dict) -> str:
    """'Rand error r, pixel error p' (', AP50 a' where the validation counted cells)."""
    text = f"Rand error {errors['rand_error']:.4f}, pixel error {errors['pixel_error']:.4f}"
    return f"{text}, AP50 {errors['ap50']:.3f}" if "ap50" in errors else text


def training_choice(results: str | os.PathLike) -> str:
    """The train step's choice_sentence (results/model/validation.json), or '' before it ran."""
    path = Path(results) / "model" / "validation.json"
    return f"Training {choice_sentence(json.loads(path.read_text()))}." if path.exists() else ""


def headline_rst(rows: list[list[str]], choice: str = "") -> str:
    """An rst table of the volumes' rows and the paper's, or '' without any volume; with
    `choice` (training_choice) after it, which says how much the choice flatters a validate
    volume's figures."""
    if not rows:
        return ""
    warping, rand, pixel = PAPER_TABLE_1["u-net (paper)"]
    paper = ["U-Net, paper Table 1 (ISBI test set)", "training and choosing", f"{pixel:.4f}",
             f"{rand:.4f}", f"{warping:.6f}", "–", "–"]  # fmt: skip
    lines = ["", "Headline (volumes held out from training; a validate volume also chose the kept "
             "model, a test volume chose nothing: its figures are the ones to quote; errors "
             "lower is better, AP higher):", "",
             ".. list-table::", "   :header-rows: 1", ""]  # fmt: skip
    for row in [list(COLUMNS), *rows, paper]:
        lines += [f"   * - {row[0]}", *(f"     - {cell}" for cell in row[1:])]
    if choice:
        lines += ["", choice]
    return "\n".join(lines) + "\n"


def write_front_page(
    template: str | os.PathLike, out: str | os.PathLike, rows, choice: str = ""
) -> Path:
    """`template` with the headline (headline_rst) appended, written to `out` only when it
    changes (every Snakemake start parses the workflow; jobs on other nodes too)."""
    text = Path(template).read_text() + headline_rst(rows, choice)
    out = Path(out)
    if not out.exists() or out.read_text() != text:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, out)
    return out
