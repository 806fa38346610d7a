"""Sections of uneven brightness: the demo stack with a drift of contrast and brightness over its
slices, the held-out slices the faintest, trained and scored by the real workflow with the
volume's percentiles (`percentile`, the default) and with each slice's (`percentile_per_slice`);
and both on the demo as it is, where no slice differs, to show what per-slice costs there."""

from __future__ import annotations

import numpy as np

from bench.record import record
from bench.sparse import TRAIN_SLICES, demo_held_out_errors, train_volumes
from unetseg.data import demo_volume

SEEDS = (0, 1)
METHODS = ("percentile", "percentile_per_slice")
# Grey value g in [0, 1] of slice z is shown as offset + gain * g: the train slices fade from
# full contrast to 0.7, the held-out ones are faint and bright, as a thin or washed-out section.
TRAIN_GAINS, TRAIN_OFFSETS = (
    np.linspace(1.0, 0.7, TRAIN_SLICES),
    np.linspace(0.0, 0.1, TRAIN_SLICES),
)
HELD_OUT_GAIN, HELD_OUT_OFFSET = 0.45, 0.35


def drifting(raw: np.ndarray) -> np.ndarray:
    """`raw` (uint8) with each slice's contrast and brightness changed as above."""
    held_out = raw.shape[0] - TRAIN_SLICES
    gains = np.concatenate([TRAIN_GAINS, np.full(held_out, HELD_OUT_GAIN)])
    offsets = np.concatenate([TRAIN_OFFSETS, np.full(held_out, HELD_OUT_OFFSET)])
    shown = offsets[:, None, None] + gains[:, None, None] * (raw / 255.0)
    return np.clip(np.round(shown * 255), 0, 255).astype(np.uint8)


def held_out_rand_errors(raw, labels, method: str) -> list[float]:
    def train_volume(workdir):  # slices 0 to TRAIN_SLICES, every pixel labelled
        return train_volumes(workdir, raw, labels, "dense")

    errors = []
    for seed in SEEDS:
        metrics = demo_held_out_errors(
            raw, labels, train_volume, {"seed": seed, "normalize": method}
        )
        errors.append(round(metrics["rand_error"], 4))
    return errors


def normalize_drift() -> None:
    """normalize_drift_<method>, normalize_plain_<method>: held-out Rand error (mean of 2 training
    seeds) of the demo network on the drifting stack and on the demo as it is."""
    raw, labels = demo_volume((8, 256, 256), seed=0)
    for stack, volume in (("drift", drifting(raw)), ("plain", raw)):
        for method in METHODS:
            errors = held_out_rand_errors(volume, labels, method)
            print(f"{stack} {method}: held-out Rand error {errors}", flush=True)
            record(
                f"normalize_{stack}_{method}",
                round(float(np.mean(errors)), 4),
                "Rand error (held out)",
                "report only",
                rand_error=errors,
                seeds=list(SEEDS),
                stack=(
                    f"train slices 0-5 at gain {TRAIN_GAINS[0]:g}-{TRAIN_GAINS[-1]:g}, offset "
                    f"{TRAIN_OFFSETS[0]:g}-{TRAIN_OFFSETS[-1]:g}; held-out slices 6-7 at gain "
                    f"{HELD_OUT_GAIN:g}, offset {HELD_OUT_OFFSET:g} (of grey values in 0-1)"
                    if stack == "drift"
                    else "the demo volume as it is"
                ),
                network="demo: depth 3, 16 channels, 300 steps, grey-value augmentation on",
            )


BENCHMARKS = {"normalize-drift": normalize_drift}
