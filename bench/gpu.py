"""On a machine with a CUDA GPU (`python -m bench gpu`, run through a lent GPU machine): training
steps of the paper-size U-Net per precision, the prediction pipeline against the bare model on
the GPU, and the CPU bf16 benchmark on that machine's CPU. Skipped where there is no GPU."""

from __future__ import annotations

import functools
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import predict as predict_bench
from bench import train as train_bench
from bench.record import record
from unetseg import tiling
from unetseg.model import UNet, compiled, prepare
from unetseg.predict import forward_tiles, predict_volume
from unetseg.train import TrainConfig, training_step

CUDA = torch.device("cuda")
VARIANTS = [("fp32", False), ("fp32", True), ("fp16", True), ("bf16", True)]
PREDICT_WORKERS = 4  # Dask workers of the named prediction figures (more gained nothing, run 4)


def device_seconds(function, device: torch.device) -> float:
    """Wall time of one call, with the GPU's queued work finished on both sides."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    synchronize()
    started = time.perf_counter()
    function()
    synchronize()
    return time.perf_counter() - started


def device_name(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return f"{name}, torch {torch.__version__}"


def training_step_seconds(device, precision, channels_last, base_channels, steps, batch_size=1,
                          compile_mode="off"):  # fmt: skip
    """Median step time of the paper's network (572 -> 388, batch 1 unless given), fed CPU
    batches (pinned on CUDA, as the DataLoader gives them), under torch.compile unless
    `compile_mode` is "off"; and every loss, warm-up (and compilation) included."""
    config = TrainConfig(precision=precision, channels_last=channels_last, steps=1000,
                         batch_size=batch_size)  # fmt: skip
    torch.manual_seed(0)
    model = prepare(UNet(depth=4, base_channels=base_channels), device, channels_last).train()
    model = compiled(model, compile_mode)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    batch = (
        torch.rand(batch_size, 1, 572, 572),
        torch.randint(0, 2, (batch_size, 388, 388)),
        torch.ones(batch_size, 388, 388),
    )
    if device.type == "cuda":
        batch = tuple(tensor.pin_memory() for tensor in batch)
    losses = [training_step(model, optimizer, scaler, batch, config, device, s) for s in range(3)]
    times = []
    for step in range(steps):
        times.append(
            device_seconds(
                lambda s=step: losses.append(
                    training_step(model, optimizer, scaler, batch, config, device, s)
                ),
                device,
            )
        )
    return statistics.median(times), losses


def cuda_training(device=CUDA, base_channels=64, steps=20, variants=VARIANTS):
    """cuda_train_step_ms per precision, and fp16 + channels_last against fp32."""
    step_s = {}
    for precision, channels_last in variants:
        seconds, losses = training_step_seconds(
            device, precision, channels_last, base_channels, steps
        )
        step_s[precision, channels_last] = seconds
        name = f"cuda_train_step_ms_{precision}{'_channels_last' if channels_last else ''}"
        record(name, round(1000 * seconds, 2), "ms per step", "report", gpu=device_name(device),
               steps=steps, losses_finite=bool(np.isfinite(losses).all()),
               network=f"depth 4, {base_channels} channels, 572 -> 388, batch 1")  # fmt: skip
    fastest = variants[-2]  # fp16 + channels_last on CUDA
    record(f"cuda_{fastest[0]}_cl_vs_fp32_train", round(step_s[variants[0]] / step_s[fastest], 2),
           "x fp32 step speed", "report", gpu=device_name(device))  # fmt: skip


def cuda_training_batches(device=CUDA, base_channels=64, steps=10, batch_sizes=(1, 4, 8),
                          precision="fp16", channels_last=True) -> None:  # fmt: skip
    """cuda_train_samples_s_batch<B>: samples per second of steps of B tiles, against batch 1
    (train.batch_size; the loss is the mean over the batch's pixels, so the learning rate
    stays as it is)."""
    rates = {}
    for batch_size in batch_sizes:
        seconds, losses = training_step_seconds(
            device, precision, channels_last, base_channels, steps, batch_size
        )
        rates[batch_size] = batch_size / seconds
        record(f"cuda_train_samples_s_batch{batch_size}", round(rates[batch_size], 1),
               "samples/s", "report", vs_batch1=round(rates[batch_size] / rates[batch_sizes[0]], 2),
               precision=precision, channels_last=channels_last, gpu=device_name(device),
               losses_finite=bool(np.isfinite(losses).all()),
               network=f"depth 4, {base_channels} channels, 572 -> 388")  # fmt: skip


def cuda_prediction(device=CUDA, base_channels=64, slices=(8, 32), batch_size=9,
                    variants=VARIANTS, workers=(PREDICT_WORKERS,), size_px=2048) -> dict[str, float]:  # fmt: skip
    """predict_vs_bare_model_cuda: the Dask overlap-tile pipeline (Zarr in and out) against the
    bare model's forward over the same number of tiles, paper-size network, per precision and
    number of Dask workers (they overlap the CPU's reading, tiling and writing with the GPU), on
    a volume of `size_px` slices (and, for fp32 and fp16 with the first number of workers, one 4x
    as deep, where what a prediction costs once weighs 4x less); the speeds of the bare model
    per precision, on the first volume.
    A 1024-px chunk holds 3 x 3 tiles of 388 px: batches of 9 fill the GPU with no short batch."""
    depth, tile_out, tile_in = 4, 388, tiling.input_size(388, 4)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for depth_z in slices:
            predict_bench.make_raw(folder / f"raw-{depth_z}.zarr", (depth_z, size_px, size_px))
        model = predict_bench.save_model(folder / "model.pt", depth, base_channels)
        runs = itertools.count()
        # uint8 tiles, as the pipeline sends them (scaled to [0, 1] on the device)
        tiles = np.random.default_rng(0).integers(0, 256, (batch_size, tile_in, tile_in), np.uint8)
        bare_mpx_s = {}  # per precision, the fastest layout: for the simulated GPU
        for precision, channels_last in variants:
            net = prepare(
                UNet(depth=depth, base_channels=base_channels), device, channels_last
            ).eval()
            net.load_state_dict(model.state_dict())

            def bare(n_tiles, net=net, precision=precision, channels_last=channels_last):
                for _ in range(-(-n_tiles // batch_size)):
                    forward_tiles(net, tiles, device, precision, channels_last)

            def ours(n_workers, depth_z, precision=precision, channels_last=channels_last):
                predict_volume(
                    folder / "model.pt", folder / f"raw-{depth_z}.zarr",
                    folder / f"p{next(runs)}.zarr", tile_out=tile_out, batch_size=batch_size,
                    block_px=1024, workers=n_workers, threads=os.cpu_count(),
                    precision=precision, channels_last=channels_last, device=device.type,
                )  # fmt: skip

            bare(batch_size), ours(workers[0], slices[0])  # warm-up: cuDNN picks its kernels
            timed = [(n_workers, slices[0]) for n_workers in workers]
            if (precision, channels_last) in (("fp32", False), ("fp16", True)):
                timed += [(workers[0], depth_z) for depth_z in slices[1:]]
            for n_workers, depth_z in timed:
                shape = (depth_z, size_px, size_px)
                n_tiles = depth_z * predict_bench.tiles_per_slice(size_px)
                rounds = [
                    (
                        device_seconds(functools.partial(ours, n_workers, depth_z), device),
                        device_seconds(functools.partial(bare, n_tiles), device),
                    )
                    for _ in range(3)
                ]
                ours_s, bare_s = (statistics.median(times) for times in zip(*rounds, strict=True))
                mpx = np.prod(shape) / 1e6
                suffix = f"{precision}{'_channels_last' if channels_last else ''}"
                suffix += f"_{depth_z}_slices" if depth_z != slices[0] else ""
                suffix += f"_{n_workers}_workers" if n_workers != PREDICT_WORKERS else ""
                record(f"predict_vs_bare_model_cuda_{suffix}", round(bare_s / ours_s, 3),
                       "x bare model speed", ">= 0.9", workers=n_workers,
                       ours_mpx_s=round(mpx / ours_s, 2), bare_mpx_s=round(mpx / bare_s, 2),
                       volume="x".join(map(str, shape)), tiles=n_tiles, batch=batch_size,
                       gpu=device_name(device), rounds=3,
                       network=f"depth 4, {base_channels} channels, 572 -> 388")  # fmt: skip
                if depth_z == slices[0]:
                    bare_mpx_s[precision] = max(bare_mpx_s.get(precision, 0), mpx / bare_s)
    return bare_mpx_s


def augment_rates(
    device: torch.device,
    samples: int = 400,
    tile_out: int = 388,
    depth: int = 4,
    size_px: int = 1024,
    workers: int | None = None,
) -> dict[str, float]:
    """Augmented samples per second (572-px tiles of 4 slices in memory, after a warm-up of
    one sample per worker): the CPU loader with every core (`workers`: all by default) against
    the device path, whose loaders (one core fewer: training needs the last) only draw the
    choices and read the windows, and whose device resamples (train.augment_device)."""
    from unetseg import augment_device
    from unetseg.samples import Samples, Volume

    workers = workers or os.cpu_count() or 1
    source = np.random.default_rng(0)
    image = source.random((4, size_px, size_px), dtype=np.float32)
    volume = Volume.from_arrays(image, image > 0.5, source.random(image.shape, dtype=np.float32))
    config = TrainConfig(depth=depth, tile_out=tile_out)
    tile_in = tiling.input_size(tile_out, depth)

    def rate(windows_only: bool, processes: int) -> float:
        loader = torch.utils.data.DataLoader(
            Samples([volume], tile_in, tile_out, config, windows_only), batch_size=1,
            num_workers=processes, collate_fn=list if windows_only else None,
        )  # fmt: skip
        batches = iter(loader)
        for _ in range(max(processes, 1)):  # warm-up: the processes start
            next(batches)
        started = time.perf_counter()
        for _ in range(samples):
            batch = next(batches)
            if windows_only:
                batch = augment_device.augmented_batch(batch, tile_in, tile_out, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return samples / (time.perf_counter() - started)

    return {"cpu_loader": rate(False, workers), "device": rate(True, max(workers - 1, 0))}


def gpu_augment_vs_cpu_loader(device=CUDA) -> None:
    rates = augment_rates(device)
    record("gpu_augment_vs_cpu_loader", round(rates["device"] / rates["cpu_loader"], 2),
           "x the CPU loader's samples/s", ">= 4", gpu=device_name(device),
           device_samples_s=round(rates["device"], 1), cpu_loader_samples_s=round(rates["cpu_loader"], 1),
           cpu_loader_workers=os.cpu_count(), tile="572 -> 388")  # fmt: skip


# Each precision's bare-model speed from `gpu-predict`, for the simulated GPU (`gpu-more`) run
# after it in the same process.
BARE_MPX_S: dict[str, float] = {}
# The two precisions whose ratios issue "The hardware fully used" names; the other two layouts,
# and 8 workers, are `gpu-more`'s.
NAMED_VARIANTS = [("fp32", False), ("fp16", True)]


def cuda_available() -> bool:
    if not torch.cuda.is_available():
        print("bench gpu: no CUDA device here; skipped")
    return torch.cuda.is_available()


def gpu_predict() -> None:
    """predict_vs_bare_model_cuda_fp32 and _fp16_channels_last (8 and 32 slices, 4 workers)."""
    if cuda_available():
        BARE_MPX_S.update(cuda_prediction(variants=NAMED_VARIANTS))


def gpu_augment() -> None:
    if cuda_available():
        gpu_augment_vs_cpu_loader()


def gpu_train() -> None:
    if cuda_available():
        cuda_training()
        cuda_training_batches()


def gpu_more() -> None:
    """What the goals do not name: the other layouts and 8 workers, the simulated GPU at this
    GPU's speeds on this machine's CPU, and the CPU's bf16 figure on this machine."""
    if not cuda_available():
        return
    others = [variant for variant in VARIANTS if variant not in NAMED_VARIANTS]
    cuda_prediction(variants=others, slices=(8,))
    cuda_prediction(variants=NAMED_VARIANTS, slices=(8,), workers=(8,))
    if BARE_MPX_S:
        from bench import pipeline  # the simulated GPU at this GPU's speeds, on this CPU

        pipeline.predict_pipeline(device_mpx_s=dict(BARE_MPX_S), free=False,
                                  note=f"this machine's bare model speed ({device_name(CUDA)})")  # fmt: skip
    train_bench.cpu_bf16_cl_vs_fp32(repeats=3)


# In the order of what the issues need most, as bench/gpu-check.sh runs them within its minutes
# (each figure is recorded when measured, so a run cut short keeps what came first).
STEPS = {"gpu-predict": gpu_predict, "gpu-augment": gpu_augment, "gpu-train": gpu_train,
         "gpu-more": gpu_more}  # fmt: skip


def on_gpu_machine() -> None:
    for step in STEPS.values():
        step()


def cuda_prediction_profile(shape=(2, 2048, 2048), batch_size=9) -> None:
    """Where a GPU prediction spends its time: one worker, Dask's sync scheduler, under cProfile
    (printed, not recorded; only the calling thread is profiled, zarr's own show as lock waits)."""
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        predict_bench.make_raw(folder / "raw.zarr", shape)
        predict_bench.save_model(folder / "model.pt", depth=4, base_channels=64)

        def run(name):
            predict_volume(folder / "model.pt", folder / "raw.zarr", folder / name, tile_out=388,
                           batch_size=batch_size, block_px=1024, scheduler="sync", threads=1,
                           precision="fp16", channels_last=True, device="cuda")  # fmt: skip

        run("warm.zarr")
        profile = cProfile.Profile()
        profile.runcall(run, "profiled.zarr")
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


BENCHMARKS = {"gpu": on_gpu_machine, **STEPS}
