"""Toward the card's limit (`python -m bench gpu-limits`, on a lent GPU machine after `bench
gpu`): what large batches, bf16 with channels_last, CUDA graphs and torch.compile give the paper
network's bare forward and the prediction pipeline, against what the card's own bf16 matrix
products reach. Skipped where there is no GPU; a CPU test runs the same functions with a tiny
network (no graphs, compile mode "dynamo").

The paper's network costs 2.0 GFLOP per output pixel (301 GFLOP per 572 -> 388 tile, counted
by torch's FlopCounterMode), so a card's bf16 rate bounds the pixels per second any pipeline
can reach."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import predict as predict_bench
from bench.gpu import CUDA, device_name, device_seconds, training_step_seconds
from bench.record import record
from unetseg import tiling
from unetseg.model import UNet, autocast, compiled, prepare
from unetseg.predict import predict_volume

PAPER = {"depth": 4, "base_channels": 64, "tile_out": 388}


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def flop_per_output_px(depth: int, base_channels: int, tile_out: int) -> float:
    """Forward FLOPs of one tile over its output pixels, counted on the meta device (no data)."""
    net = UNet(depth=depth, base_channels=base_channels).to("meta").eval()
    tile_in = tiling.input_size(tile_out, depth)
    with FlopCounterMode(display=False) as counter:
        net(torch.empty(1, 1, tile_in, tile_in, device="meta"))
    return counter.get_total_flops() / tile_out**2


def matmul_tflops(device: torch.device, n: int = 8192, repeats: int = 10) -> float:
    """The bf16 rate the device reaches on large square matrix products: the practical peak."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    a @ b  # warm-up
    seconds = device_seconds(lambda: [a @ b for _ in range(repeats)], device)
    return 2 * n**3 * repeats / seconds / 1e12


def graphed(forward, batch: torch.Tensor):
    """`forward(batch)` captured once as a CUDA graph; the returned call replays it on whatever
    was copied into the captured input (the launch cost of ~50 kernels paid once)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up outside the graph: cuDNN picks its kernels
            forward(batch)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = forward(batch)

    def replay():
        graph.replay()
        return out

    return replay


def bare_forward(net, batch: torch.Tensor, device, precision: str, graphs: bool):
    """The forward and softmax of a device-resident batch (no copies: the card's side alone)."""

    def forward(inputs):
        # autocast's weight cache would be freed under a graph's feet
        with torch.inference_mode(), autocast(device, precision, cache=not graphs):
            return torch.softmax(net(inputs).float(), dim=1)[:, 1]

    return graphed(forward, batch) if graphs else lambda: forward(batch)


def forward_rates(device=CUDA, network=PAPER, batch_sizes=(9, 36), precisions=("bf16", "fp16"),
                  compile_mode="default", rounds=5) -> list[dict]:  # fmt: skip
    """Bare forward Mpx/s per batch size, precision (channels_last), CUDA graphs (CUDA only)
    and torch.compile (the first precision at the largest batch; compiling takes a while)."""
    depth, base_channels, tile_out = network["depth"], network["base_channels"], network["tile_out"]
    tile_in = tiling.input_size(tile_out, depth)
    torch.manual_seed(0)
    eager = prepare(UNet(depth=depth, base_channels=base_channels), device, True).eval()
    variants = [(b, p, False, "off") for b in batch_sizes for p in precisions]
    if device.type == "cuda":
        variants += [(b, precisions[0], True, "off") for b in batch_sizes]
    variants += [(batch_sizes[-1], precisions[0], False, compile_mode)]
    rates = []
    for batch_size, precision, graphs, mode in variants:
        batch = torch.rand(batch_size, 1, tile_in, tile_in, device=device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        started = time.perf_counter()
        run = bare_forward(compiled(eager, mode), batch, device, precision, graphs)
        run()  # compiles, or picks kernels
        setup_s = time.perf_counter() - started
        seconds = statistics.median(device_seconds(run, device) for _ in range(rounds))
        rates.append({"batch": batch_size, "precision": precision, "cuda_graphs": graphs,
                      "compile": mode, "mpx_s": significant(batch_size * tile_out**2 / seconds / 1e6),
                      "setup_s": round(setup_s, 1)})  # fmt: skip
        print(rates[-1], flush=True)
    return rates


def pipeline_rates(device=CUDA, network=PAPER, slices=8, size_px=2048, precision="bf16",
                   layouts=((9, 1024), (36, 2048)), compile_mode="default", workers=4,
                   rounds=3) -> list[dict]:  # fmt: skip
    """predict_volume's Mpx/s (Zarr in and out, Dask threads) per batch of tiles (with the
    block that holds that many: 3 x 3 tiles of 388 px in 1024 px, 6 x 6 in 2048), eager, then
    compiled at the largest batch."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        predict_bench.make_raw(folder / "raw.zarr", (slices, size_px, size_px))
        predict_bench.save_model(folder / "model.pt", network["depth"], network["base_channels"])
        variants = [(batch, block, "off") for batch, block in layouts]
        variants += [(*layouts[-1], compile_mode)]
        rates = []
        for run_number, (batch_size, block_px, mode) in enumerate(variants):

            def predict(name, batch_size=batch_size, block_px=block_px, mode=mode):
                predict_volume(
                    folder / "model.pt", folder / "raw.zarr", folder / name,
                    tile_out=network["tile_out"], batch_size=batch_size, block_px=block_px,
                    workers=workers, threads=os.cpu_count(), precision=precision,
                    channels_last=True, device=device.type, compile_mode=mode,
                )  # fmt: skip

            started = time.perf_counter()
            predict(f"warm-{run_number}.zarr")  # compiles, or picks kernels
            setup_s = time.perf_counter() - started
            seconds = statistics.median(
                device_seconds(lambda name=f"p{run_number}-{r}.zarr": predict(name), device)
                for r in range(rounds)
            )
            mpx = slices * size_px**2 / 1e6
            rates.append({"batch": batch_size, "block_px": block_px, "compile": mode,
                          "precision": precision, "workers": workers,
                          "mpx_s": significant(mpx / seconds), "setup_s": round(setup_s, 1)})  # fmt: skip
            print(rates[-1], flush=True)
    return rates


def compiled_training(device=CUDA, base_channels=64, steps=10, precision="bf16",
                      compile_mode="default") -> dict:  # fmt: skip
    """Median training step (batch 1, channels_last) eager and under torch.compile."""
    times = {}
    for mode in ("off", compile_mode):
        seconds, _ = training_step_seconds(device, precision, True, base_channels, steps,
                                           compile_mode=mode)  # fmt: skip
        times[mode] = seconds
    return times


def on_gpu_machine() -> None:
    if not torch.cuda.is_available():
        print("bench gpu-limits: no CUDA device here; skipped")
        return
    gpu, flop_px = device_name(CUDA), flop_per_output_px(**PAPER)
    peak = matmul_tflops(CUDA)
    limit_mpx_s = peak * 1e12 / flop_px / 1e6
    record("cuda_bf16_matmul_tflops", round(peak, 1), "TFLOP/s (8192^2 bf16 products)", "report",
           gpu=gpu, limit_mpx_s=round(limit_mpx_s, 1), gflop_per_px=round(flop_px / 1e9, 3))  # fmt: skip
    bare = forward_rates()
    best_bare = max(bare, key=lambda rate: rate["mpx_s"])
    record("predict_cuda_bare_mpx_s", best_bare["mpx_s"], "Mpx/s (paper network, forward only)",
           "report", gpu=gpu, best=best_bare, variants=bare)  # fmt: skip
    pipeline = pipeline_rates()
    best = max(pipeline, key=lambda rate: rate["mpx_s"])
    record("predict_cuda_mpx_s", best["mpx_s"], "Mpx/s (predict_volume, Zarr in and out)",
           ">= 200", gpu=gpu, best=best, variants=pipeline,
           vs_best_bare=round(best["mpx_s"] / best_bare["mpx_s"], 3))  # fmt: skip
    record("predict_cuda_fraction_of_peak", round(best["mpx_s"] / limit_mpx_s, 3),
           "of the card's measured bf16 rate", "report", gpu=gpu, limit_mpx_s=round(limit_mpx_s, 1),
           bare_fraction=round(best_bare["mpx_s"] / limit_mpx_s, 3))  # fmt: skip
    times = compiled_training()
    record("cuda_train_compiled_vs_eager", round(times["off"] / times["default"], 2),
           "x the eager step's speed (bf16, channels_last, batch 1)", "report", gpu=gpu,
           step_ms={mode: round(1000 * s, 2) for mode, s in times.items()})  # fmt: skip


BENCHMARKS = {"gpu-limits": on_gpu_machine}
