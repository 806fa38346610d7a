"""The ISBI 2012 GPU harness (`bash bench/isbi-gpu.sh OUT`): K arms trained at once on one GPU,
each from config/isbi2012.yaml + isbi2012-gpu.yaml with its own overrides, then the held-out
slices predicted with and without TTA and scored with the ISBI 2012 metrics; one table.

    python -m bench.isbi_gpu OUT [--tiny] [--arms a,b] [--steps N]   all arms, then the table
    python -m bench.isbi_gpu OUT --arm NAME --workers N   one arm (what the first starts)

--tiny: a 2-channel network for a few steps on the CPU, to test the harness before GPU minutes
are spent on it. Figures go to OUT/isbi-gpu.md and OUT/results.jsonl (records shaped as
bench/results.jsonl's: isbi_gpu_warping, isbi_gpu_rand, isbi_gpu_pixel, isbi_gpu_minutes and
isbi_gpu_minutes_to_rand_0.05).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.record import REPO, commit, machine
from unetseg import evaluate, io, samples, train
from unetseg.chunk import chunk_volume
from unetseg.predict import predict_volume
from unetseg.settings import train_settings
from unetseg.weights import compute_weights

# What each arm changes over the GPU overlay; `val` is the held-out slice range [start, stop)
# of the 20 labelled slices (the rest train), so that arms can also be folds.
ARMS = {
    "overlay": {},
    "ema": {"train": {"ema_decay": 0.999}},
    "group_ema": {"model": {"norm": "group"}, "train": {"ema_decay": 0.999}},
    "topology": {"train": {"topology_weight": 0.5}},  # soft-clDice of the membranes (topology.py)
}
# `topology` only when asked (--arms): it lowered no error in four CPU runs (BENCHMARKS.md,
# recipe-isbi and isbi-folds-topology) and its slower steps would slow the arms sharing the GPU.
DEFAULT_ARMS = ("overlay", "ema", "group_ema")
TINY = {
    "model": {"depth": 2, "base_channels": 2},
    "train": {"tile_out": 124, "steps": 6, "validate_every": 3, "max_minutes": 0, "device": "cpu"},
    "predict": {"tile_out": 256, "block_px": 512, "device": "cpu"},
}
# The figure names of each held-out metric and their goals (issue "Beat the paper on ISBI 2012").
FIGURES = {"warping_error": "warping", "rand_error": "rand", "pixel_error": "pixel"}
GOALS = {"warping_error": "<= 0.00035", "rand_error": "<= 0.030", "pixel_error": "<= 0.058"}
# Time to accuracy (issue "The hardware fully used"): training minutes until the held-out Rand
# error first reaches this, goal 3 minutes on one H200.
RAND_TARGET = 0.05


def isbi_data() -> Path:
    """The ISBI 2012 files: $ISBI_DATA, data/isbi2012 (the README's place; carried to a GPU
    machine) or ../shared/data/isbi2012."""
    for folder in (os.environ.get("ISBI_DATA"), REPO / "data/isbi2012",
                   REPO.parent / "shared/data/isbi2012"):  # fmt: skip
        if folder and (Path(folder) / "train-volume.tif").exists():
            return Path(folder)
    raise SystemExit("bench isbi-gpu: no ISBI 2012 data (set ISBI_DATA or fill data/isbi2012)")


# Training minutes an arm may take at most, so that the whole command ends within isbi-gpu.sh's
# 450 s (stores, start, prediction and scoring ~2 minutes) and, with bench/gpu-check.sh after it
# and the machine's start, within one session's 15 device minutes; the table's steps column says
# whether it stopped the overlay's schedule.
MINUTES = 4.5
# Steps a second the arms sharing one H200 make in all: two runs of the overlay shared it at
# 38.8 steps/s each (issue 27); one alone is taken at the overlay's ~40 (its steps' comment).
SHARED_STEPS_PER_S, ALONE_STEPS_PER_S = 77.6, 40.0


def arm_steps(arms: int) -> int:
    """Steps for each of `arms` arms sharing the GPU, so that the poly schedule ends within
    MINUTES with a tenth to spare (the overlay's 12000 need ~5 minutes alone: three arms would
    stop at ~7000 with the learning rate still high); in hundreds."""
    per_arm = min(ALONE_STEPS_PER_S, SHARED_STEPS_PER_S / arms)
    return int(0.9 * MINUTES * 60 * per_arm) // 100 * 100


def arm_config(arm: str, tiny: bool, steps: int | None = None) -> dict:
    """The workflow's config for an arm: the schema's defaults, the demo's config, isbi2012.yaml,
    the GPU overlay, the arm's overrides and its `steps` (default: the overlay's), laid over each
    other as Snakemake does (without Snakemake, which a GPU machine need not have; the test
    suite validates the files)."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    layers = [defaults(schema)]
    layers += [yaml.safe_load((REPO / "config" / name).read_text())
               for name in ("config.yaml", "isbi2012.yaml", "isbi2012-gpu.yaml")]  # fmt: skip
    budget = {"max_minutes": MINUTES} | ({"steps": steps} if steps else {})
    layers += [ARMS[arm], {"train": budget}, TINY if tiny else {}]
    config: dict = {}
    for layer in layers:
        config = laid_over(config, layer)
    return config


def defaults(schema: dict) -> dict:
    """The default of every key of a JSON schema's objects, nested as the config nests them."""
    found = {}
    for key, spec in schema.get("properties", {}).items():
        if spec.get("type") == "object" and "properties" in spec:
            found[key] = defaults(spec)
        elif "default" in spec:
            found[key] = spec["default"]
    return found


def laid_over(base: dict, layer: dict) -> dict:
    """`layer` over `base`: dictionaries merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = laid_over(base[key], value)
        else:
            merged[key] = value
    return merged


def stores(out: Path, val: tuple[int, int]) -> dict[str, Path]:
    """Train and held-out stores of the 20 labelled slices (made once per held-out range)."""
    folder = out / f"stores-{val[0]}-{val[1]}"
    paths = {
        "train": [folder / f"train_{name}.zarr" for name in ("raw", "labels", "weights")],
        "val": [folder / f"val_{name}.zarr" for name in ("raw", "labels")],
    }
    if (folder / "done").exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    data = isbi_data()
    held_out = range(*val)
    train_slices = [z for z in range(20) if z not in held_out]
    if train_slices != list(range(train_slices[0], train_slices[-1] + 1)):
        raise SystemExit(f"bench isbi-gpu: held-out slices {val} must leave one train range")
    for role, slices in (("train", (train_slices[0], train_slices[-1] + 1)), ("val", val)):
        chunk_volume(data / "train-volume.tif", folder / f"{role}_raw.zarr", slices=slices)
        chunk_volume(data / "train-labels.tif", folder / f"{role}_labels.zarr", slices=slices,
                     is_labels=True)  # fmt: skip
    compute_weights(paths["train"][1], paths["train"][2])
    (folder / "done").touch()
    return paths


def run_arm(
    out: Path, arm: str, workers: int, tiny: bool, val: tuple[int, int], steps: int | None = None
) -> dict:
    """Train one arm, predict its held-out slices with and without TTA, score them."""
    config = arm_config(arm, tiny, steps)
    settings = train_settings(config) | {"workers": workers}
    augment = train.AugmentConfig(**settings.pop("augment"))
    train_config = train.TrainConfig(**settings, augment=augment)
    paths = stores(out, val)
    folder = out / arm
    folder.mkdir(exist_ok=True)
    volumes = [samples.load_volume(*paths["train"], config=train_config)]
    held_out = [samples.load_volume(*paths["val"], config=train_config)]
    started = time.perf_counter()
    best = train.train(volumes, held_out, train_config, folder / "model.pt",
                       folder / "train_log.tsv", folder / "checkpoint.pt")  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    last_row = (folder / "train_log.tsv").read_text().splitlines()[-1].split("\t")
    row = {"arm": arm, "settings": ARMS[arm], "held_out": list(val), "kept_step": best["step"],
           "steps_done": int(last_row[0]), "steps_planned": train_config.steps,
           "train_minutes": round(minutes, 2), "workers": workers,
           "minutes_to_rand": minutes_to_rand(folder / "train_log.tsv"),
           "validation_rand": validation_rand(best["choice"])}  # fmt: skip
    predict = config["predict"]
    for tta in (False, True):
        probability = folder / f"probability{'-tta' if tta else ''}.zarr"
        predict_volume(folder / "model.pt", paths["val"][0], probability,
                       tile_out=predict["tile_out"], block_px=predict["block_px"],
                       workers=predict["workers"], threads=max(workers, 1),
                       precision=predict["precision"], device=predict["device"], tta=tta)  # fmt: skip
        metrics = evaluate.evaluate_arrays(io.open_zarr(paths["val"][1]),
                                           io.open_zarr(probability), workers=4)  # fmt: skip
        row["tta" if tta else "plain"] = {key: round(metrics[key], 6) for key in FIGURES}
    (folder / "row.json").write_text(json.dumps(row))
    return row


def validation_rand(summary: dict) -> dict:
    """Training's validation Rand error of the kept network, on the slices that chose it and
    with each slice scored by the network the other slices chose (unetseg/choice.py)."""
    estimate = summary["leave_one_slice_out"]
    return {"kept": round(summary["kept"]["rand_error"], 6),
            "leave_one_slice_out": round(estimate["rand_error"], 6) if estimate else None}  # fmt: skip


def minutes_to_rand(log_path: Path, target: float = RAND_TARGET) -> float | None:
    """Training wall minutes (from the first step, earlier validations included) until the
    validation Rand error on the held-out slices first reached `target`; None if it never did.
    Validation predicts as the arm's predict step does: with TTA where `predict.tta` is on (the
    GPU overlay), as the rows' "tta" figures."""
    lines = log_path.read_text().splitlines()
    header = lines[0].split("\t")
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=True))
        if row["rand_error"] and float(row["rand_error"]) <= target:
            return round(float(row["seconds"]) / 60, 2)
    return None


def table(rows: list[dict]) -> str:
    lines = [f"| arm | held out | TTA | warping | Rand | pixel | train min | min to Rand "
             f"{RAND_TARGET} | steps | kept step | validation Rand: kept, left out |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for row in rows:
        validation = row["validation_rand"]
        left_out = validation["leave_one_slice_out"]
        left_out = "–" if left_out is None else f"{left_out:.4f}"
        for key in ("plain", "tta"):
            errors = row[key]
            lines.append(
                f"| {row['arm']} | {row['held_out'][0]}-{row['held_out'][1] - 1} "
                f"| {'yes' if key == 'tta' else 'no'} | {errors['warping_error']:.6f} "
                f"| {errors['rand_error']:.4f} | {errors['pixel_error']:.4f} "
                f"| {row['train_minutes']} | {row['minutes_to_rand'] or 'not reached'} "
                f"| {row['steps_done']} of {row['steps_planned']} "
                f"| {row['kept_step']} | {validation['kept']:.4f}, {left_out} |"
            )
    return "\n".join(lines) + "\n"


def records(rows: list[dict], tiny: bool, sharing: int) -> list[dict]:
    """The figures as bench/results.jsonl entries, one per arm and metric (TTA on); `sharing`
    arms shared the GPU (its minutes are theirs together: one alone trains faster)."""
    stamp = {"command": "bash bench/isbi-gpu.sh OUT", "commit": commit(), "machine": machine(),
             "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "arms_sharing_the_gpu": sharing}  # fmt: skip
    entries = []
    for row in rows:
        arm = {"arm": row["arm"], "settings": row["settings"] or "config/isbi2012-gpu.yaml",
               "held_out": row["held_out"], "steps": row["steps_planned"],
               "without_tta": row["plain"], "tiny": tiny}  # fmt: skip
        for key, figure in FIGURES.items():
            entries.append({"name": f"isbi_gpu_{figure}", "value": row["tta"][key],
                            "unit": f"{key} (held out, TTA)", "goal": GOALS[key], **stamp, **arm})  # fmt: skip
        entries.append({"name": "isbi_gpu_minutes", "value": row["train_minutes"],
                        "unit": "training wall minutes", "goal": "", **stamp, **arm})  # fmt: skip
        entries.append({"name": f"isbi_gpu_minutes_to_rand_{RAND_TARGET}",
                        "value": row["minutes_to_rand"], "goal": "<= 3",
                        "unit": f"training wall minutes until the held-out Rand error (no TTA) "
                                f"first reached {RAND_TARGET}; null: not reached",
                        **stamp, **arm})  # fmt: skip
        entries.append({"name": "isbi_gpu_validation_rand_leave_one_slice_out",
                        "value": row["validation_rand"]["leave_one_slice_out"],
                        "goal": "report only", "kept": row["validation_rand"]["kept"],
                        "unit": "training's validation Rand error, each held-out slice scored by "
                                "the network the other slices chose (the kept one's: kept)",
                        **stamp, **arm})  # fmt: skip
    return entries


def run_all(
    out: Path, arms: list[str], tiny: bool, val: tuple[int, int], steps: int | None = None
) -> None:
    """All arms at once, each in its own process with an equal share of the cores, each for
    `steps` (default: what fits the GPU's share, arm_steps)."""
    stores(out, val)  # once, before the arms start
    workers = max(1, (os.cpu_count() or 2) // len(arms) - 1)
    steps = steps or arm_steps(len(arms))
    processes = {
        arm: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.isbi_gpu",
                str(out),
                "--arm",
                arm,
                "--workers",
                str(workers),
                "--val",
                str(val[0]),
                str(val[1]),
                "--steps",
                str(steps),
                *(["--tiny"] if tiny else []),
            ],
            stdout=(out / f"{arm}.log").open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for arm in arms
    }
    failed = [arm for arm, process in processes.items() if process.wait()]
    rows = [json.loads((out / arm / "row.json").read_text()) for arm in arms if arm not in failed]
    (out / "isbi-gpu.md").write_text(table(rows))
    with (out / "results.jsonl").open("a") as results:
        for entry in records(rows, tiny, len(arms)):
            results.write(json.dumps(entry) + "\n")
    print(table(rows), flush=True)
    if failed:
        raise SystemExit(f"bench isbi-gpu: arms {failed} failed; see {out}/<arm>.log")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.isbi_gpu")
    parser.add_argument("out", type=Path)
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS))
    parser.add_argument("--arm")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--val", type=int, nargs=2, default=(16, 20))
    parser.add_argument("--steps", type=int, help="each arm's steps (default: what fits)")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.arm:
        run_arm(args.out, args.arm, args.workers, args.tiny, tuple(args.val), args.steps)
    else:
        run_all(args.out, args.arms.split(","), args.tiny, tuple(args.val), args.steps)


if __name__ == "__main__":
    main()
