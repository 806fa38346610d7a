"""Segmenting one slice chunk by chunk (ours) against labelling the whole slice at once (what
`unetseg segment` did before, and what ndimage.label needs): peak memory and time, per size."""

from __future__ import annotations

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
target[0] = segment_slice(probability[0], 0.5)[0]
"""


def make_probability(path: Path, side: int) -> None:
    """A slice of smooth cells between sharp membranes, about 20 px across, as float16."""
    field = ndimage.gaussian_filter(np.random.default_rng(0).standard_normal((side, side)), 4)
    store = io.create_ome_zarr(path, (1, side, side), np.float16, (1, CHUNK_PX, CHUNK_PX),
                               (1, 1, 1))  # fmt: skip
    store[0] = 1 / (1 + np.exp(-8 * field / field.std()))


def segment_memory(sides=(2048, 4096, 8192)) -> None:
    """segment_peak_rss_mb_<side>px: `unetseg segment` on one slice of growing size, beside the
    whole-slice labelling in the same run; both in fresh processes, their ids compared."""
    for side in sides:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            make_probability(folder / "p.zarr", side)
            ours = [sys.executable, "-m", "unetseg", "segment", str(folder / "p.zarr"),
                    str(folder / "ours.zarr"), "--threshold", "0.5"]  # fmt: skip
            whole = [sys.executable, "-c", WHOLE_SLICE, str(folder / "p.zarr"),
                     str(folder / "whole.zarr")]  # fmt: skip
            taken = {}
            for name, command in (("ours", ours), ("whole", whole)):
                started = time.perf_counter()
                taken[name] = (peak_rss_mb(command), time.perf_counter() - started)
            same = np.array_equal(
                io.open_zarr(folder / "ours.zarr")[...], io.open_zarr(folder / "whole.zarr")[...]
            )
            cells = int(io.open_zarr(folder / "ours.zarr")[...].max())
            record(f"segment_peak_rss_mb_{side}px", round(taken["ours"][0]), "MB",
                   "flat in slice size", whole_slice_mb=round(taken["whole"][0]),
                   seconds=round(taken["ours"][1], 1), whole_slice_seconds=round(taken["whole"][1], 1),
                   slice=f"{side}x{side} float16, {CHUNK_PX}-px chunks", cells=cells,
                   same_ids=bool(same))  # fmt: skip
            print(f"{side} px: ours {taken['ours'][0]:.0f} MB {taken['ours'][1]:.1f} s, "
                  f"whole slice {taken['whole'][0]:.0f} MB {taken['whole'][1]:.1f} s, "
                  f"{cells} cells, same ids: {same}")  # fmt: skip


BENCHMARKS = {"segment-memory": segment_memory}
