"""The segmentation settings chosen on the validate volumes by instance AP at IoU 0.5 (not in the
paper): for objects such as nuclei, the threshold of the best Rand error (ISBI's choice) keeps
touching objects together, and how deep a neck splits two objects depends on the data."""

from __future__ import annotations

import itertools
import logging

import numpy as np

from unetseg import evaluate, io, labels
from unetseg.segment import segment_slice

log = logging.getLogger(__name__)

THRESHOLDS = evaluate.PIXEL_RAND_THRESHOLDS[1:-1]  # 0.1 .. 0.9, as the metrics scan them
SPLIT_HS = (None, 0.5, 1.0, 2.0, 3.0, 4.0)  # split_h candidates: none, then shallow to deep


def tune_segmentation(
    probability_paths: list,
    label_paths: list,
    split_h: float | str | None = "auto",
    seed_threshold: float | None = None,
    min_size_px: int = 0,
) -> dict:
    """The threshold (and, with split_h 'auto', the split depth) of the best instance AP50
    pooled over the validate volumes, with every candidate's AP50; ties go to the first tried.
    Validate volumes are read whole, a volume at a time: they are small held-out sets."""
    split_hs = SPLIT_HS if split_h == "auto" else (split_h,)
    candidates = list(itertools.product(THRESHOLDS, split_hs))
    counts = np.zeros((len(candidates), 3), np.int64)
    for probability_path, label_path in zip(probability_paths, label_paths, strict=True):
        probability = np.asarray(io.open_zarr(probability_path)[...])
        truth = np.asarray(io.open_zarr(label_path)[...])
        kind = labels.store_conventions(label_path)[0]
        for index, (threshold, h) in enumerate(candidates):
            segmented = np.stack([
                segment_slice(p, threshold, seed_threshold, min_size_px, h)[0] for p in probability
            ])  # fmt: skip
            counts[index] += evaluate.instance_metrics(truth, segmented, kind)["counts"][0]
    ap50 = [evaluate.average_precision(row[np.newaxis])[0] for row in counts]
    best = int(np.argmax(ap50))
    threshold, h = candidates[best]
    log.info("segmentation tuned on %d volumes: threshold %s, split_h %s (AP50 %.4f)",
             len(label_paths), threshold, h, ap50[best])  # fmt: skip
    return {
        "threshold": threshold,
        "split_h": h,
        "ap50": ap50[best],
        "candidates": [
            {"threshold": t, "split_h": s, "ap50": a}
            for (t, s), a in zip(candidates, ap50, strict=True)
        ],
    }
