"""Segmenting one slice chunk by chunk (ours) against labelling the whole slice at once (what
`unetseg segment` did before, and what ndimage.label needs): peak memory and time, per size,
by threshold and by the seeded watershed; and what dropping small cells (segment.min_size_px)
does to instance AP on ISBI 2012."""

from __future__ import annotations

import functools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from bench.record import peak_rss_mb, record
from unetseg import io

CHUNK_PX = 768  # predict.block_px's default: the probability store's chunks
WHOLE_SLICE = """
import sys, numpy as np
from unetseg import io
from unetseg.segment import segment_slice
probability = io.open_zarr(sys.argv[1])
target = io.create_ome_zarr(sys.argv[2], probability.shape, np.uint32, probability.chunks, (1, 1, 1))
seed = float(sys.argv[3]) if len(sys.argv) > 3 else None
target[0] = segment_slice(probability[0], 0.5, seed)[0]
"""


def make_probability(path: Path, side: int) -> None:
    """A slice of smooth cells between sharp membranes, about 20 px across, as float16."""
    field = ndimage.gaussian_filter(np.random.default_rng(0).standard_normal((side, side)), 4)
    store = io.create_ome_zarr(path, (1, side, side), np.float16, (1, CHUNK_PX, CHUNK_PX),
                               (1, 1, 1))  # fmt: skip
    store[0] = 1 / (1 + np.exp(-8 * field / field.std()))


def make_cells(path: Path, side: int, slices: int = 1) -> None:
    """A stack of EM-like probabilities for the seeded watershed (`cell_probabilities`), float16
    in 768-px chunks."""
    store = io.create_ome_zarr(path, (slices, side, side), np.float16, (1, CHUNK_PX, CHUNK_PX),
                               (1, 1, 1))  # fmt: skip
    for z in range(slices):
        store[z] = cell_probabilities(side, np.random.default_rng(z))


def cell_probabilities(side: int, rng: np.random.Generator, cell_px: int = 24) -> np.ndarray:
    """Voronoi cells about `cell_px` across between 3-px membranes (0.05), of which about 15 %
    are faint (0.65: above the threshold, so plain components join those cells, below the seed
    threshold), blurred, with noise. A Gaussian field cut at 0.5 would not do for the watershed:
    half the slice above a level percolates into one cell as wide as the slice."""
    points = np.ones((side, side), bool)
    count = (side // cell_px) ** 2
    points[rng.integers(0, side, count), rng.integers(0, side, count)] = False
    nearest = ndimage.distance_transform_edt(points, return_distances=False, return_indices=True)
    owner = nearest[0].astype(np.int64) * side + nearest[1]
    del nearest
    membrane = np.zeros((side, side), bool)
    membrane[1:] |= owner[1:] != owner[:-1]
    membrane[:, 1:] |= owner[:, 1:] != owner[:, :-1]
    membrane = ndimage.binary_dilation(membrane)
    faint = owner * 2654435761 % 1000 < 150  # a hash of the cell: its membrane pixels are faint
    del owner
    probability = np.where(membrane, np.where(faint, 0.65, 0.05), 0.95).astype(np.float32)
    del membrane, faint
    probability = ndimage.gaussian_filter(probability, 1.0)
    probability += rng.normal(0, 0.03, probability.shape).astype(np.float32)
    return np.clip(probability, 0, 1)


def segment_memory(sides=(2048, 4096, 8192), seed: float | None = None) -> None:
    """segment_peak_rss_mb_<side>px: `unetseg segment` on one slice of growing size, beside the
    whole-slice labelling in the same run; both in fresh processes, their ids compared. With a
    `seed` threshold, segment_watershed_peak_rss_mb_<side>px: the seeded watershed (by windows
    of whole cells) beside segment_slice's on the whole slice, on EM-like cells (make_cells)."""
    prefix = "segment_peak_rss_mb" if seed is None else "segment_watershed_peak_rss_mb"
    seed_args = [] if seed is None else [str(seed)]
    for side in sides:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            (make_probability if seed is None else make_cells)(folder / "p.zarr", side)
            ours = [sys.executable, "-m", "unetseg", "segment", str(folder / "p.zarr"),
                    str(folder / "ours.zarr"), "--threshold", "0.5"]  # fmt: skip
            ours += [] if seed is None else ["--watershed-seed", str(seed)]
            whole = [sys.executable, "-c", WHOLE_SLICE, str(folder / "p.zarr"),
                     str(folder / "whole.zarr"), *seed_args]  # fmt: skip
            taken = {}
            for name, command in (("ours", ours), ("whole", whole)):
                started = time.perf_counter()
                taken[name] = (peak_rss_mb(command), time.perf_counter() - started)
            same = np.array_equal(
                io.open_zarr(folder / "ours.zarr")[...], io.open_zarr(folder / "whole.zarr")[...]
            )
            cells = int(io.open_zarr(folder / "ours.zarr")[...].max())
            record(f"{prefix}_{side}px", round(taken["ours"][0]), "MB",
                   "flat in slice size", whole_slice_mb=round(taken["whole"][0]),
                   seconds=round(taken["ours"][1], 1), whole_slice_seconds=round(taken["whole"][1], 1),
                   slice=f"{side}x{side} float16, {CHUNK_PX}-px chunks", cells=cells,
                   watershed_seed_threshold=seed,
                   same_ids=bool(same))  # fmt: skip
            print(f"{side} px: ours {taken['ours'][0]:.0f} MB {taken['ours'][1]:.1f} s, "
                  f"whole slice {taken['whole'][0]:.0f} MB {taken['whole'][1]:.1f} s, "
                  f"{cells} cells, same ids: {same}")  # fmt: skip


def segment_threads(slices: int = 8, side: int = 4096, threads: int = 2) -> None:
    """segment_threads_speedup, segment_watershed_threads_speedup: `unetseg segment` of a stack
    of EM-like slices with `threads` threads against one, in the same run, ids compared."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        make_cells(folder / "p.zarr", side, slices)
        for prefix, seed_args in (
            ("segment", []),
            ("segment_watershed", ["--watershed-seed", "0.8"]),
        ):
            seconds = {}
            for count in (1, threads):
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "unetseg", "segment", str(folder / "p.zarr"),
                                str(folder / f"{count}.zarr"), "--threshold", "0.5", *seed_args,
                                "--threads", str(count)], check=True)  # fmt: skip
                seconds[count] = time.perf_counter() - started
            same = np.array_equal(io.open_zarr(folder / "1.zarr")[...],
                                  io.open_zarr(folder / f"{threads}.zarr")[...])  # fmt: skip
            record(f"{prefix}_threads_speedup", round(seconds[1] / seconds[threads], 2), "x",
                   f"near {threads} on {threads} cores", threads=threads,
                   seconds_1_thread=round(seconds[1], 1),
                   seconds_threads=round(seconds[threads], 1),
                   stack=f"{slices}x{side}x{side} float16, {CHUNK_PX}-px chunks", same_ids=same)  # fmt: skip
            print(f"{prefix}: 1 thread {seconds[1]:.1f} s, {threads} threads "
                  f"{seconds[threads]:.1f} s, same ids: {same}")  # fmt: skip


def segment_min_size(sizes=(0, 10, 20, 30, 50, 75, 100, 200)) -> None:
    """segment_min_size_ap50: instance AP50 of the shipped ISBI model's cells on the held-out
    slices 16-19 with segment.min_size_px chosen by AP50 on the training slices 0-15, against
    keeping every cell (0); every size's AP on both sets is printed and recorded (skipped
    without the ISBI data). Threshold: the workflow's 'auto', the best Rand F on 16-19."""
    import tifffile
    import torch

    from bench.record import REPO
    from bench.train import ISBI
    from unetseg import evaluate
    from unetseg.predict import load_model, predict_block
    from unetseg.segment import segment_slice

    if not (ISBI / "train-volume.tif").exists():
        print(f"bench segment-min-size: no ISBI 2012 data at {ISBI}; skipped")
        return
    torch.set_num_threads(2)
    model, _ = load_model(str(REPO / "models/isbi2012-cpu-16ch/model.pt"))
    raw = tifffile.imread(ISBI / "train-volume.tif")
    truth = tifffile.imread(ISBI / "train-labels.tif")
    probability = np.stack([predict_block(model, raw, z, (0, 512), (0, 512), 516)
                            for z in range(len(raw))])  # fmt: skip
    held_out = slice(16, 20)
    threshold = evaluate.evaluate_arrays(truth[held_out], probability[held_out], 2)["rand"][
        "best_threshold"
    ]
    ap = {}
    for name, part in (("train", slice(0, 16)), ("held_out", held_out)):
        for size in sizes:
            cells = np.stack([segment_slice(p, threshold, min_size_px=size)[0]
                              for p in probability[part]])  # fmt: skip
            metrics = evaluate.instance_metrics(truth[part], cells, "binary")
            ap[name, size] = (metrics["ap50"], metrics["mean_ap"])
            print(f"{name}, min size {size} px: AP50 {metrics['ap50']:.3f}, "
                  f"mean AP {metrics['mean_ap']:.3f}", flush=True)  # fmt: skip
    chosen = max(sizes, key=lambda size: ap["train", size][0])
    record("segment_min_size_ap50", round(ap["held_out", chosen][0], 4),
           f"held-out AP50 with min_size_px {chosen} (chosen on slices 0-15)", "report",
           ap50_keep_all=round(ap["held_out", 0][0], 4), chosen_min_size_px=chosen,
           threshold=round(threshold, 2), network="models/isbi2012-cpu-16ch",
           **{f"{name}_{size}px": [round(v, 4) for v in values]
              for (name, size), values in ap.items()})  # fmt: skip


BENCHMARKS = {
    "segment-memory": segment_memory,
    "segment-watershed-memory": functools.partial(segment_memory, seed=0.8),
    "segment-threads": segment_threads,
    "segment-min-size": segment_min_size,
}
