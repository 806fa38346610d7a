"""ISBI metric speed against one scikit-image adapted_rand_error call on the same 512² slice, and
the evaluate stage's peak memory on stacks of growing depth."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

import numpy as np
import tifffile
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from bench.record import REPO, checkouts, peak_rss_and_seconds, record
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


def evaluate_memory(depths=(2, 8), size_px: int = 2048) -> None:
    """evaluate_memory_deep_vs_shallow: peak RSS of `unetseg evaluate` (TIFF truth and float32
    probability, 2 threads) on stacks of `depths` slices of size_px², the deeper over the
    shallower; with UNETSEG_BASELINE naming another checkout (a `git worktree`), its code too."""
    from unetseg.data import demo_volume

    code = checkouts()
    plane = demo_volume((1, size_px, size_px), seed=1)[1][0]  # instance ids: cells, membranes
    variants = [plane, plane[::-1], plane[:, ::-1], plane[::-1, ::-1]]  # slices that differ
    peaks = {}
    with tempfile.TemporaryDirectory() as folder:
        for depth in depths:
            truth = np.stack([variants[z % 4] > 0 for z in range(depth)]).astype(np.uint8) * 255
            blurred = ndimage.gaussian_filter(truth / 255.0, (0, 2, 2)).astype(np.float32)
            tifffile.imwrite(f"{folder}/truth{depth}.tif", truth)
            tifffile.imwrite(f"{folder}/prob{depth}.tif", blurred)
            del truth, blurred
            for who, path in code.items():
                peaks[who, depth], _ = peak_rss_and_seconds([
                    sys.executable, "-m", "unetseg", "evaluate", "--truth", f"{folder}/truth{depth}.tif",
                    "--prediction", f"{folder}/prob{depth}.tif", "--threads", "2",
                ], path)  # fmt: skip
                print(f"{who}, {depth} slices: {peaks[who, depth]:.0f} MB", flush=True)
    shallow, deep = depths
    extra = {f"{who}_{depth}_slices_mb": round(mb) for (who, depth), mb in peaks.items()}
    record("evaluate_memory_deep_vs_shallow", round(peaks["ours", deep] / peaks["ours", shallow], 3),
           f"x peak RSS of {shallow} slices at {deep}", "about 1 (memory independent of depth)",
           slice_px=size_px, threads=2, **extra)  # fmt: skip


BENCHMARKS = {"metrics": metrics, "evaluate-memory": evaluate_memory}
