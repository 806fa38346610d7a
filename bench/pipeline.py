"""The prediction pipeline's own cost, with the model taken out, on a CPU: what it can feed a GPU.

`python -m bench predict-pipeline`. Two stand-ins replace the model, in a fresh process per run:
- FreeNetwork, a network that costs next to nothing: the pipeline's speed alone, in Mpx/s;
- a simulated device: each batch holds one lock (the one GPU) for the time the real model takes
  on a GPU at a given speed, without using the CPU, and returns probabilities as a GPU returns
  them (already in the output's dtype). The ratio of that device time to the pipeline's is what
  `predict_vs_bare_model_cuda` measures on a real GPU, with the CPU of this machine.
With UNETSEG_BASELINE set to another checkout of unetseg (a `git worktree`), its code runs the
same, in alternating rounds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from bench.predict import DEPTH, TILE_OUT, make_raw, save_model, tiles_per_slice
from bench.record import REPO, alternating_medians, commit, record, seconds
from unetseg import tiling

SHAPE, BATCH = (8, 2048, 2048), 9  # 1024-px chunks of 3 x 3 tiles: batches of 9, as on the GPU
TILES = SHAPE[0] * tiles_per_slice(SHAPE[1])  # 288
# The bare paper-size model on the lent H200 (BENCHMARKS.md, GPU run 4): Mpx/s of this volume,
# whose 288 tiles it ran in batches of 9 (1.43 ms a tile in fp16).
GPU_MPX_S = {"fp16": 81.4, "fp32": 44.8}
# The volume above, and one 4x as deep: what a prediction costs once (opening the stores, the
# first block's read before the device starts, the last one's write after it stops) weighs 4x
# less in the second, which comes closer to the steady state of a large volume.
SLICES = (8, 32)


class FreeNetwork(torch.nn.Module):
    """Stands in for the U-Net at next to no cost: the centre of each input tile (what the
    U-Net's valid convolutions keep), as two class scores."""

    def __init__(self, depth: int = DEPTH):
        super().__init__()
        self.config, self.context = {"depth": depth}, tiling.context_px(depth)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        centre = batch[..., self.context : -self.context, self.context : -self.context]
        return torch.cat([-centre, centre], dim=1)


class SimulatedDevice:
    """forward_tiles on one device that runs SHAPE's tiles at `mpx_s` Mpx/s of SHAPE (as the
    bare model's speed is measured) and leaves the CPU free: batches wait for each other, as on
    one GPU, and come back in the output's dtype."""

    def __init__(self, mpx_s: float):
        self.tile_s = device_seconds(mpx_s) / TILES
        self.busy, self.results = threading.Lock(), {}
        from scipy import ndimage

        # Smooth regions and sharp edges: encodes a little slower than the shipped ISBI model's
        # probability maps, to about the same size (by hand, one thread: zstd 1 156 against
        # 195 MiB/s, lz4 1 486 against 652 MiB/s; ratios 1.39 / 1.26 against 1.34 / 1.23).
        field = ndimage.gaussian_filter(
            np.random.default_rng(0).standard_normal((BATCH, TILE_OUT, TILE_OUT)), (0, 6, 6)
        )
        self.probability = 1 / (1 + np.exp(-4 * field / field.std()))

    def __call__(self, model, tiles, device, precision, channels_last, tta=False,
                 out_dtype=np.float32):  # fmt: skip
        with self.busy:
            time.sleep(len(tiles) * self.tile_s)
        dtype = np.dtype(out_dtype)
        if dtype not in self.results:
            self.results[dtype] = self.probability.astype(dtype)
        return self.results[dtype][: len(tiles)].copy()  # the copy back from the device


def pipeline_seconds(
    folder: str, workers: int, name: str, device_mpx_s: float, slices: int = SHAPE[0]
) -> float:
    """One timed predict_volume of the volume of `slices` slices, after a warm-up, in this
    process, with the model replaced by FreeNetwork (device_mpx_s 0) or by a SimulatedDevice of
    that speed."""
    from unetseg import predict

    def free_model(path, device="cpu", channels_last=False):
        return FreeNetwork(), {"model_config": {"depth": DEPTH}}

    predict.load_model = free_model  # looked up in the module on each call, so replaced there
    if device_mpx_s:
        predict.forward_tiles = SimulatedDevice(device_mpx_s)
    folder = Path(folder)

    def run(out):
        predict.predict_volume(
            folder / "model.pt", folder / raw_name(slices), folder / out, tile_out=TILE_OUT,
            batch_size=BATCH, block_px=1024, workers=workers, threads=workers, device="cpu",
        )  # fmt: skip

    run(f"{name}-warm-up.zarr")
    return seconds(lambda: run(f"{name}.zarr"))


def raw_name(slices: int) -> str:
    return f"raw-{slices}.zarr"


def in_fresh_process(
    code: Path, folder: str, workers: int, name: str, device_mpx_s: float, slices: int
):
    """A contender for alternating_medians: pipeline_seconds with the unetseg in `code`."""

    def run(round_: int) -> float:
        probe = (
            "import sys; from bench.pipeline import pipeline_seconds as f; "
            "print(f(sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), "
            "int(sys.argv[5])))"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe, folder, str(workers), f"{name}-{round_}",
             str(device_mpx_s), str(slices)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(code), str(REPO), os.environ.get("PYTHONPATH", "")])},
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(done.stderr[-3000:])
        return float(done.stdout.split()[-1])

    return run


def predict_pipeline(
    rounds: int = 3,
    device_mpx_s: dict[str, float] = GPU_MPX_S,
    free: bool = True,
    note: str = "the H200's bare model speed (GPU run 4), per volume px",
) -> None:
    """predict_pipeline_mpx_s (FreeNetwork, if `free`) and predict_vs_simulated_gpu (a device of
    each precision's speed in `device_mpx_s`: by default the H200's; `bench gpu` passes the
    speeds it measured, so the simulation can be set beside the real ratio on that machine) on
    SHAPE, the latter also on the deeper volume of SLICES, and each against the baseline
    checkout when UNETSEG_BASELINE names one."""
    # (model, device Mpx/s, workers, slices)
    stand_ins = [("free", 0, 1, SHAPE[0]), ("free", 0, 2, SHAPE[0])] if free else []
    stand_ins += [(precision, mpx_s, 4, slices) for slices in SLICES
                  for precision, mpx_s in device_mpx_s.items()]  # fmt: skip
    baseline = os.environ.get("UNETSEG_BASELINE")
    code = {"ours": REPO / "workflow"}
    if baseline:
        code["baseline"] = Path(baseline) / "workflow"
    with tempfile.TemporaryDirectory() as folder:
        for slices in SLICES:
            make_raw(Path(folder) / raw_name(slices), (slices, *SHAPE[1:]))
        save_model(Path(folder) / "model.pt", base_channels=2)  # hashed into the output's attrs
        contenders = {}
        for who, path in code.items():
            for model, mpx_s, workers, slices in stand_ins:
                key = (who, model, mpx_s, workers, slices)
                contenders[key] = in_fresh_process(
                    path, folder, workers, "-".join(map(str, key)), mpx_s, slices
                )
        medians = alternating_medians(contenders, rounds)
    for model, mpx_s, workers, slices in stand_ins:
        mpx = slices * np.prod(SHAPE[1:]) / 1e6
        ours_s = medians["ours", model, mpx_s, workers, slices]
        extra = {"volume": "x".join(map(str, (slices, *SHAPE[1:]))), "batch": BATCH,
                 "rounds": rounds, "workers": workers, "ours_mpx_s": round(mpx / ours_s, 2)}  # fmt: skip
        if baseline:
            base_s = medians["baseline", model, mpx_s, workers, slices]
            extra |= {"baseline": commit(Path(baseline)), "baseline_mpx_s": round(mpx / base_s, 2)}
        if model == "free":
            record(f"predict_pipeline_mpx_s_{workers}w", extra.pop("ours_mpx_s"), "Mpx/s",
                   "report (what the CPU can feed a GPU)", network="FreeNetwork", **extra)  # fmt: skip
            continue
        device_s = device_seconds(mpx_s, slices)
        if baseline:
            extra["baseline_ratio"] = round(device_s / base_s, 3)
        name = f"predict_vs_simulated_gpu_{model}" + (
            f"_{slices}_slices" if slices != SHAPE[0] else ""
        )
        record(name, round(device_s / ours_s, 3), "x simulated device speed",
               ">= 0.9 (as predict_vs_bare_model_cuda)", device_mpx_s=mpx_s, note=note, **extra)  # fmt: skip


def device_seconds(mpx_s: float, slices: int = SHAPE[0]) -> float:
    """The simulated device's time for the volume of `slices` slices, at `mpx_s` Mpx/s of SHAPE
    (the same time per tile whatever the depth)."""
    return slices * np.prod(SHAPE[1:]) / (mpx_s * 1e6)


BENCHMARKS = {"predict-pipeline": predict_pipeline}
