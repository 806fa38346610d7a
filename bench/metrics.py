"""ISBI metric speed against one scikit-image adapted_rand_error call on the same 512² slice."""

from __future__ import annotations

import statistics
import time

import numpy as np
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from bench.record import REPO, record
from unetseg import evaluate

ISBI_LABELS = REPO.parent / "shared" / "data" / "isbi2012" / "train-labels.tif"


def median_seconds(function, repeats: int = 7) -> float:
    function()  # warm-up (numba compilation, caches)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def slices() -> tuple[np.ndarray, np.ndarray, str]:
    """A 512² truth slice and a plausible probability map (its Gaussian-blurred mask)."""
    if ISBI_LABELS.exists():
        import tifffile

        truth, source = tifffile.imread(ISBI_LABELS)[0], "ISBI 2012 train-labels slice 0"
    else:
        from unetseg.data import demo_volume

        truth, source = demo_volume((1, 512, 512))[1][0], "synthetic demo slice"
    probability = ndimage.gaussian_filter((truth > 0).astype(float), 2).astype(np.float32)
    return truth, probability, source


def metrics() -> None:
    """metrics_rand_pixel_vs_skimage and metrics_warping_vs_skimage (ratios, lower is better).

    Ours: pixel counts and both Rand normalisations (N² and pairs) at the 11 thresholds; warping
    at its 10 thresholds. Theirs: one adapted_rand_error call at one threshold.
    """
    truth, probability, source = slices()
    four = evaluate.FOUR_CONNECTED
    truth_ids = ndimage.label(truth > 0, structure=four)[0]
    predicted_ids = ndimage.label(probability > 0.5, structure=four)[0]
    skimage_s = median_seconds(lambda: adapted_rand_error(truth_ids, predicted_ids))
    thresholds = evaluate.PIXEL_RAND_THRESHOLDS

    def pixel_and_rand():
        evaluate.pixel_counts(truth, probability, thresholds)
        evaluate.rand_counts(truth, probability, thresholds)

    ours_s = median_seconds(pixel_and_rand)
    warping_s = median_seconds(
        lambda: evaluate.warping_counts(truth, probability, evaluate.WARPING_THRESHOLDS), 3
    )
    common = {"skimage_call_s": round(skimage_s, 4), "data": source}
    record("metrics_rand_pixel_vs_skimage", round(ours_s / skimage_s, 2), "x skimage call", "<= 5",
           ours_s=round(ours_s, 4), **common)  # fmt: skip
    record("metrics_warping_vs_skimage", round(warping_s / skimage_s, 2), "x skimage call", "<= 50",
           ours_s=round(warping_s, 4), **common)  # fmt: skip


BENCHMARKS = {"metrics": metrics}
