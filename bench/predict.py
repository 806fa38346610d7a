"""Prediction speed and memory: the Dask overlap-tile pipeline against the bare model on the same
tiles and against MONAI's sliding_window_inference, per precision; peak RSS on growing volumes."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.record import alternating_medians, peak_rss_mb, record, seconds
from unetseg import blocks, io, tiling
from unetseg.intensity import normalized, unit_mapping
from unetseg.model import UNet, prepare
from unetseg.predict import forward_tiles, predict_volume

DEPTH, CHANNELS, TILE_OUT = 4, 16, 388  # the ISBI CPU model (config/isbi2012-cpu.yaml)


def make_raw(path: Path, shape: tuple[int, int, int], chunk_px: int = 1024) -> None:
    """A raw store of EM-like texture, written slice by slice (never whole in memory)."""
    from unetseg.data import demo_volume

    texture = demo_volume((1, 512, 512), seed=0)[0][0]
    target = io.create_ome_zarr(path, shape, np.uint8, (1, chunk_px, chunk_px), (1.0, 1.0, 1.0), {})
    reps = (-(-shape[1] // 512), -(-shape[2] // 512))
    for z in range(shape[0]):
        target[z] = np.roll(np.tile(texture, reps), z * 7, axis=1)[: shape[1], : shape[2]]


def save_model(path: Path, depth: int = DEPTH, base_channels: int = CHANNELS) -> UNet:
    """A U-Net with seeded random weights, saved as `unetseg predict` loads it, with the default
    grey-value normalisation that `unetseg train` records (percentile: a sampling pass first)."""
    torch.manual_seed(0)
    model = UNet(depth=depth, base_channels=base_channels).eval()
    settings = {"normalize": "percentile", "normalize_percentiles": [1.0, 99.8]}
    torch.save({"model_config": model.config, "model_state": model.state_dict(),
                "train_config": settings}, path)  # fmt: skip
    return model


def tiles_per_slice(size_px: int) -> int:
    return tiles_across_slice(size_px, size_px)


def tiles_across_slice(size_px: int, block_px: int) -> int:
    """Tiles of a square slice cut into square blocks."""
    return tiling.tiles_across(size_px, block_px, TILE_OUT, DEPTH) ** 2


def bare_model_seconds(
    model, n_tiles: int, precision: str, channels_last: bool, batch_size: int = 1
) -> float:
    """The model's forward alone over n tiles already in memory, in batches as predict feeds it."""
    tile_in = tiling.input_size(TILE_OUT, DEPTH)
    # uint8 tiles, as the pipeline sends them (forward_tiles scales them to [0, 1])
    tiles = np.random.default_rng(0).integers(0, 256, (batch_size, tile_in, tile_in), np.uint8)
    device = torch.device("cpu")
    net = prepare(model, device, channels_last)
    forward_tiles(net, tiles, device, precision, channels_last)  # warm-up
    return seconds(
        lambda: [
            forward_tiles(net, tiles, device, precision, channels_last)
            for _ in range(n_tiles // batch_size)
        ]
    )


def monai_seconds(model, raw: np.ndarray) -> float:
    """MONAI sliding_window_inference with 388-px windows and no overlap; each window is mirror-
    padded by the network's context inside the predictor, so windows need no overlap either."""
    from monai.inferers import sliding_window_inference

    context = tiling.context_px(DEPTH)

    def predictor(window):
        padded = torch.nn.functional.pad(window, [context] * 4, mode="reflect")
        return torch.softmax(model(padded), dim=1)

    def run():
        with torch.inference_mode():
            for z in range(raw.shape[0]):
                image = torch.from_numpy(normalized(raw[z], unit_mapping(raw.dtype)))[None, None]
                sliding_window_inference(image, (TILE_OUT, TILE_OUT), 1, predictor, overlap=0.0)

    return seconds(run)


def predict_speed(shape=(2, 1024, 1024)) -> None:
    """predict_vs_bare_model and predict_vs_monai (fp32, medians of 3 alternating rounds), the
    default 2 Dask workers of one thread against 1 of two threads, and the pipeline per
    precision."""
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        make_raw(folder / "raw.zarr", shape)
        model = save_model(folder / "model.pt")
        raw = io.open_zarr(folder / "raw.zarr")[...]
        mpx = np.prod(shape) / 1e6
        n_tiles = shape[0] * tiles_per_slice(shape[1])

        def ours(precision="fp32", channels_last=False, tta=False, workers=2):
            out = folder / f"p-{precision}-{channels_last}-{tta}-{workers}.zarr"
            return seconds(
                lambda: predict_volume(
                    folder / "model.pt", folder / "raw.zarr", out, tile_out=TILE_OUT,
                    block_px=shape[1], threads=2, workers=workers, precision=precision,
                    channels_last=channels_last, device="cpu", tta=tta,
                )
            )  # fmt: skip

        ours()  # warm-up
        rounds = [
            (
                ours(),
                ours(workers=1),
                bare_model_seconds(model, n_tiles, "fp32", False),
                monai_seconds(model, raw),
            )
            for _ in range(3)
        ]  # alternating, so that a noisy spell hits all alike; medians below
        ours_s, one_worker_s, bare_s, monai_s = (
            float(np.median(times)) for times in zip(*rounds, strict=True)
        )
        split = read_compute_write_split(folder, raw.shape, bare_s)
        common = {"volume": "x".join(map(str, shape)), "network": f"depth {DEPTH}, {CHANNELS} "
                  f"channels, {TILE_OUT + 2 * tiling.context_px(DEPTH)} -> {TILE_OUT}, batch 1",
                  "threads": 2, "workers": 2, "ours_mpx_s": round(mpx / ours_s, 3)}  # fmt: skip
        record("predict_vs_bare_model", round(bare_s / ours_s, 3), "x bare model speed", ">= 0.9",
               bare_mpx_s=round(mpx / bare_s, 3), tiles=n_tiles, precision="fp32", rounds=3, **split,
               **common)  # fmt: skip
        record("predict_vs_monai", round(monai_s / ours_s, 3), "x MONAI speed", ">= 1.0",
               monai_mpx_s=round(mpx / monai_s, 3), precision="fp32", **common,
               note="MONAI: sliding_window_inference, roi 388, overlap 0, mirror context per window")  # fmt: skip
        record("predict_two_workers_vs_one", round(one_worker_s / ours_s, 3),
               "x speed of 1 worker of 2 threads", "report (sets the default)",
               one_worker_mpx_s=round(mpx / one_worker_s, 3), precision="fp32", **common)  # fmt: skip
        tta_s = ours(tta=True)
        record("predict_tta_cost", round(tta_s / ours_s, 2), "x time without TTA", "~8",
               tta_mpx_s=round(mpx / tta_s, 3), **common)  # fmt: skip
        for precision, channels_last in (("fp32", True), ("bf16", False), ("bf16", True)):
            one_slice = 1 / shape[0]  # bf16 is emulated on CPUs without bf16 instructions: slow
            ours_p = ours(precision, channels_last) if precision == "fp32" else None
            bare_p = bare_model_seconds(model, int(n_tiles * one_slice), precision, channels_last)
            name = f"predict_{precision}{'_channels_last' if channels_last else ''}_mpx_s"
            record(name, round(mpx * one_slice / bare_p, 3), "Mpx/s (bare model)", "report",
                   pipeline_mpx_s=round(mpx / ours_p, 3) if ours_p else None,
                   fp32_bare_mpx_s=round(mpx / bare_s, 3), **common)  # fmt: skip


def predict_small_network(shape=(4, 1024, 1024), base_channels: int = 2, batch_size: int = 9):
    """predict_vs_bare_model_small_network: predict_vs_bare_model with a network of 2 base
    channels instead of 16, batches of the 9 tiles of a 1024-px chunk, and one thread on both
    sides (one Dask worker of one torch thread against the bare model on one thread). The model
    is then fast beside the pipeline, as on a GPU, so the ratio is the share of the pipeline's
    time spent in the model; the rest is reading, mirroring, batching and writing. Medians of 3
    rounds."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        make_raw(folder / "raw.zarr", shape)
        model = save_model(folder / "model.pt", base_channels=base_channels)
        mpx, n_tiles = np.prod(shape) / 1e6, shape[0] * tiles_per_slice(shape[1])

        def ours(round_):
            return seconds(
                lambda: predict_volume(
                    folder / "model.pt", folder / "raw.zarr", folder / f"p{round_}.zarr",
                    tile_out=TILE_OUT, batch_size=batch_size, block_px=shape[1], threads=1,
                    workers=1, device="cpu",
                )
            )  # fmt: skip

        ours("warm-up")
        rounds = [(ours(r), bare_model_seconds(model, n_tiles, "fp32", False, batch_size))
                  for r in range(3)]  # fmt: skip
        ours_s, bare_s = (float(np.median(times)) for times in zip(*rounds, strict=True))
        record("predict_vs_bare_model_small_network", round(bare_s / ours_s, 3),
               "x bare model speed", "report (the pipeline's own cost)",
               ours_mpx_s=round(mpx / ours_s, 3), bare_mpx_s=round(mpx / bare_s, 3),
               volume="x".join(map(str, shape)), tiles=n_tiles, precision="fp32", rounds=3,
               network=f"depth {DEPTH}, {base_channels} channels, batch {batch_size}",
               threads=1, workers=1)  # fmt: skip


def predict_block_px(shape=(1, 2048, 2048), rounds: int = 3) -> None:
    """predict_block_px_768_vs_512: the new default output chunk (768 px, two tile strides)
    against the old one (512 px, where 2 x 2 tiles of 388 px hang over each chunk), ISBI CPU
    network, 2 workers; medians of alternating rounds. The output is the same either way."""
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        make_raw(folder / "raw.zarr", shape)
        save_model(folder / "model.pt")

        def ours(block_px):
            return lambda round_: seconds(
                lambda: predict_volume(
                    folder / "model.pt", folder / "raw.zarr", folder / f"p{block_px}-{round_}.zarr",
                    tile_out=TILE_OUT, block_px=block_px, threads=2, workers=2, device="cpu",
                )
            )  # fmt: skip

        medians = alternating_medians({768: ours(768), 512: ours(512)}, rounds)
        mpx = np.prod(shape) / 1e6
        record("predict_block_px_768_vs_512", round(medians[512] / medians[768], 3),
               "x speed with 512-px chunks", "report (sets the default)",
               mpx_s_768=round(mpx / medians[768], 3), mpx_s_512=round(mpx / medians[512], 3),
               tiles_768=shape[0] * tiles_across_slice(shape[1], 768),
               tiles_512=shape[0] * tiles_across_slice(shape[1], 512),
               volume="x".join(map(str, shape)),
               network=f"depth {DEPTH}, {CHANNELS} channels", rounds=rounds, workers=2)  # fmt: skip


def predict_raw_cache(shape=(2, 4096, 4096), chunk_px=512, rounds: int = 5) -> None:
    """predict_raw_cache_speedup: each task's input read (its block with the tiles' mirrored
    context) of the default layout (512-px raw chunks, 768-px blocks, 388-px tiles), in the
    blocks' order on one thread, with a worker's cache of decoded chunks against without."""
    import numcodecs.blosc

    from unetseg.blocks import DecodedChunks
    from unetseg.predict import chunk_blocks, mirrored_region, raw_cache_bytes

    numcodecs.blosc.use_threads = False  # one thread per chunk, as in a Dask worker
    with tempfile.TemporaryDirectory() as folder:
        make_raw(Path(folder) / "raw.zarr", shape, chunk_px)
        raw = io.open_zarr(Path(folder) / "raw.zarr")
        regions = [  # each block's input, as predict_block reads it
            (z, *(tiling.input_span(tiling.tile_origins(*span, TILE_OUT, DEPTH), TILE_OUT, DEPTH)
                  for span in (rows, cols)))
            for z, rows, cols in chunk_blocks(shape, (1, 768, 768))
        ]  # fmt: skip

        def read_all(cache_bytes):
            def run(round_):
                cache = DecodedChunks(cache_bytes) if cache_bytes else None
                return seconds(lambda: [mirrored_region(raw, *r, cache) for r in regions])

            return run

        cache_bytes = raw_cache_bytes(raw, 768, DEPTH)  # as predict_volume sizes it
        medians = alternating_medians({"cached": read_all(cache_bytes), "not": read_all(0)},
                                      rounds)  # fmt: skip
    mpx = np.prod(shape) / 1e6
    record("predict_raw_cache_speedup", round(medians["not"] / medians["cached"], 3),
           "x speed without the cache", "report (what each task's input read costs)",
           cached_mpx_s=round(mpx / medians["cached"], 1), uncached_mpx_s=round(mpx / medians["not"], 1),
           volume="x".join(map(str, shape)), raw_chunk_px=chunk_px, block_px=768,
           tile_out=TILE_OUT, blocks=len(regions), cache_mib=cache_bytes / 2**20, rounds=rounds,
           threads=1)  # fmt: skip


def predict_isbi_tile(tiles=(516, 388), rounds: int = 3) -> None:
    """predict_isbi_tile_516_vs_388: `predict_volume` on the 30 ISBI 2012 test slices (512²)
    with the shipped CPU model, with one 516-px tile per slice (700 px in) against 2 x 2 tiles
    of 388 px (572 in), 2 workers, medians of alternating rounds; and how far the two outputs
    differ (skipped without the ISBI data)."""
    from bench.record import REPO
    from bench.train import ISBI
    from unetseg.chunk import chunk_volume

    if not (ISBI / "test-volume.tif").exists():
        print(f"bench predict-isbi-tile: no ISBI 2012 data at {ISBI}; skipped")
        return
    model_file = REPO / "models/isbi2012-cpu-16ch/model.pt"
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        chunk_volume(ISBI / "test-volume.tif", folder / "raw.zarr", (1, 512, 512))

        def ours(tile_out):
            return lambda round_: seconds(
                lambda: predict_volume(
                    model_file, folder / "raw.zarr", folder / f"p{tile_out}-{round_}.zarr",
                    tile_out=tile_out, block_px=512, threads=2, workers=2, device="cpu",
                )
            )  # fmt: skip

        medians = alternating_medians({tile: ours(tile) for tile in tiles}, rounds)
        outputs = [
            io.open_zarr(folder / f"p{tile}-0.zarr")[...].astype(np.float32) for tile in tiles
        ]
        differ = float(np.abs(outputs[0] - outputs[1]).max())
    mpx = outputs[0].size / 1e6
    record(f"predict_isbi_tile_{tiles[0]}_vs_{tiles[1]}", round(medians[tiles[1]] / medians[tiles[0]], 3),
           f"x speed with {tiles[1]}-px tiles", "report (sets the ISBI config's predict.tile_out)",
           **{f"mpx_s_{tile}": round(mpx / medians[tile], 3) for tile in tiles},
           max_abs_difference=differ, output="float16",
           volume="x".join(map(str, outputs[0].shape)) + " (ISBI test)",
           network="models/isbi2012-cpu-16ch", rounds=rounds, workers=2)  # fmt: skip


def predict_isbi_tta(rounds: int = 3) -> None:
    """predict_isbi_tta: what test-time augmentation (the mean over the 8 flips and quarter
    turns) buys on real EM: the shipped ISBI CPU model on the held-out training slices 16-19,
    with and without it, their ISBI 2012 errors and the time it costs (medians of alternating
    rounds, 2 workers; skipped without the ISBI data)."""
    import tifffile

    from bench.record import REPO
    from bench.train import ISBI
    from unetseg.chunk import chunk_volume
    from unetseg.evaluate import evaluate_arrays, headline

    if not (ISBI / "train-volume.tif").exists():
        print(f"bench predict-isbi-tta: no ISBI 2012 data at {ISBI}; skipped")
        return
    model_file, held_out = REPO / "models/isbi2012-cpu-16ch/model.pt", (16, 20)
    truth = tifffile.imread(ISBI / "train-labels.tif")[held_out[0] : held_out[1]]
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        chunk_volume(ISBI / "train-volume.tif", folder / "raw.zarr", (1, 512, 512), held_out)

        def ours(tta):
            return lambda round_: seconds(
                lambda: predict_volume(
                    model_file, folder / "raw.zarr", folder / f"p{tta}-{round_}.zarr",
                    tile_out=516, block_px=512, threads=2, workers=2, device="cpu", tta=tta,
                )
            )  # fmt: skip

        medians = alternating_medians({tta: ours(tta) for tta in (False, True)}, rounds)
        errors = {
            tta: headline(evaluate_arrays(truth, io.open_zarr(folder / f"p{tta}-0.zarr")[...], 2))
            for tta in (False, True)
        }
    for key in ("rand_error", "pixel_error", "warping_error"):
        print(f"{key}: {errors[False][key]:.6f} plain, {errors[True][key]:.6f} with tta")
    record("predict_isbi_tta", round(errors[True]["rand_error"], 4),
           "Rand error with tta (ISBI 2012 definition)", "report (sets the ISBI config's predict.tta)",
           rand_error_plain=round(errors[False]["rand_error"], 4),
           pixel_error_tta=round(errors[True]["pixel_error"], 4),
           pixel_error_plain=round(errors[False]["pixel_error"], 4),
           warping_error_tta=round(errors[True]["warping_error"], 6),
           warping_error_plain=round(errors[False]["warping_error"], 6),
           time_ratio_tta=round(medians[True] / medians[False], 2),
           seconds_tta=round(medians[True], 2), seconds_plain=round(medians[False], 2),
           data="ISBI 2012 training slices 16-19 (held out)", network="models/isbi2012-cpu-16ch",
           tile_out=516, rounds=rounds, workers=2)  # fmt: skip


def predict_auto_vs_fp32(rounds: int = 3) -> None:
    """cpu_predict_auto_vs_fp32: the predict defaults (precision and channels_last `auto`)
    against fp32 in the default layout, end to end: the shipped ISBI CPU model on the held-out
    training slices 16-19 (medians of alternating rounds, 2 workers), with what `auto` chose on
    this CPU, both runs' ISBI 2012 errors and their largest probability difference: the
    tolerance that `auto` is documented with (skipped without the ISBI data)."""
    import tifffile

    from bench.record import REPO
    from bench.train import ISBI
    from unetseg.chunk import chunk_volume
    from unetseg.evaluate import evaluate_arrays, headline
    from unetseg.model import cpu_bf16_instructions, resolved_precision

    if not (ISBI / "train-volume.tif").exists():
        print(f"bench predict-auto: no ISBI 2012 data at {ISBI}; skipped")
        return
    model_file, held_out = REPO / "models/isbi2012-cpu-16ch/model.pt", (16, 20)
    truth = tifffile.imread(ISBI / "train-labels.tif")[held_out[0] : held_out[1]]
    settings = {"fp32": ("fp32", False), "auto": ("auto", "auto")}
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        chunk_volume(ISBI / "train-volume.tif", folder / "raw.zarr", (1, 512, 512), held_out)

        def ours(name):
            precision, channels_last = settings[name]
            return lambda round_: seconds(
                lambda: predict_volume(
                    model_file, folder / "raw.zarr", folder / f"p{name}-{round_}.zarr",
                    tile_out=516, block_px=512, threads=2, workers=2, device="cpu",
                    precision=precision, channels_last=channels_last, out_dtype="float32",
                )
            )  # fmt: skip

        medians = alternating_medians({name: ours(name) for name in settings}, rounds)
        probability = {name: io.open_zarr(folder / f"p{name}-0.zarr")[...] for name in settings}
    errors = {name: headline(evaluate_arrays(truth, p, 2)) for name, p in probability.items()}
    difference = np.abs(probability["auto"] - probability["fp32"])
    chosen = resolved_precision("auto", torch.device("cpu"))
    for key in ("rand_error", "pixel_error", "warping_error"):
        print(f"{key}: {errors['fp32'][key]:.6f} fp32, {errors['auto'][key]:.6f} auto ({chosen})")
    record("cpu_predict_auto_vs_fp32", round(medians["fp32"] / medians["auto"], 2),
           "x fp32 speed (end to end)", "report (sets predict's defaults)",
           auto_chose=f"{chosen}, channels_last", seconds_fp32=round(medians["fp32"], 2),
           seconds_auto=round(medians["auto"], 2),
           max_probability_difference=round(float(difference.max()), 4),
           mean_probability_difference=round(float(difference.mean()), 5),
           **{f"{key}_{name}": round(errors[name][key], 6) for name in settings
              for key in ("rand_error", "pixel_error", "warping_error")},
           cpu_bf16_instructions=cpu_bf16_instructions() or "none",
           data="ISBI 2012 training slices 16-19 (held out)", network="models/isbi2012-cpu-16ch",
           tile_out=516, rounds=rounds, workers=2)  # fmt: skip


def predict_codecs(settings=(("zstd", 1), ("lz4", 1)), slices: int = 8) -> None:
    """predict_codec_lz4_vs_zstd: Blosc (byte shuffle) encoding speed on one thread, as each
    prediction task encodes its chunk, and the size, for float16 probability maps of the shipped
    ISBI model on the ISBI training slices (skipped without them)."""
    import numcodecs
    import numcodecs.blosc
    import tifffile

    from bench.record import REPO
    from bench.train import ISBI
    from unetseg.predict import load_model, predict_block

    if not (ISBI / "train-volume.tif").exists():
        print(f"bench predict-codecs: no ISBI 2012 data at {ISBI}; skipped")
        return
    numcodecs.blosc.use_threads = False  # one thread per chunk, as in a Dask worker
    model, _ = load_model(str(REPO / "models/isbi2012-cpu-16ch/model.pt"))
    raw = tifffile.imread(ISBI / "train-volume.tif")[:slices]
    maps = [predict_block(model, raw, z, (0, 512), (0, 512), TILE_OUT, out_dtype=np.float16)
            for z in range(slices)]  # fmt: skip
    nbytes, speed, size = sum(m.nbytes for m in maps), {}, {}
    for cname, clevel in settings:
        codec = numcodecs.Blosc(cname, clevel, numcodecs.Blosc.SHUFFLE)
        size[cname] = sum(len(codec.encode(m)) for m in maps)  # also the warm-up
        taken = min(seconds(lambda c=codec: [c.encode(m) for m in maps]) for _ in range(5))
        speed[cname] = nbytes / taken / 2**20
    record("predict_codec_lz4_vs_zstd", round(speed["lz4"] / speed["zstd"], 2),
           "x zstd's encoding speed", "report (chooses predict.compressor)",
           lz4_mib_s=round(speed["lz4"]), zstd_mib_s=round(speed["zstd"]),
           lz4_ratio=round(nbytes / size["lz4"], 3), zstd_ratio=round(nbytes / size["zstd"], 3),
           lz4_size_vs_zstd=round(size["lz4"] / size["zstd"], 3), clevel=1, shuffle="byte",
           data=f"float16 probabilities of models/isbi2012-cpu-16ch on {slices} ISBI training slices")  # fmt: skip


def read_compute_write_split(folder: Path, shape, compute_s: float) -> dict:
    """Reading the raw chunks and writing float16 probability chunks, timed on their own."""
    source = io.open_zarr(folder / "raw.zarr")
    read_s = seconds(lambda: [source[z] for z in range(shape[0])])
    target = io.create_ome_zarr(
        folder / "w.zarr", shape, "float16", (1, *shape[1:]), (1.0, 1.0, 1.0), {}
    )
    block = np.random.default_rng(0).random(shape[1:]).astype(np.float16)
    write_s = seconds(
        lambda: [blocks.write_block(target, (z, 0, 0), block[None]) for z in range(shape[0])]
    )
    total = read_s + compute_s + write_s
    return {"read_share": round(read_s / total, 4), "compute_share": round(compute_s / total, 4),
            "write_share": round(write_s / total, 4)}  # fmt: skip


def predict_memory(sizes_gb=(0.25, 2.0)) -> None:
    """predict_peak_rss_mb: `unetseg predict` on uint8 volumes of growing size, tiny model."""
    for size_gb in sizes_gb:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            side = 4096
            shape = (round(size_gb * 1e9 / side**2), side, side)
            make_raw(folder / "raw.zarr", shape)
            save_model(folder / "m.pt", depth=1, base_channels=2)
            command = [sys.executable, "-m", "unetseg", "predict", str(folder / "m.pt"),
                       str(folder / "raw.zarr"), str(folder / "p.zarr"), "--tile-out", "1020",
                       "--block-px", "1024", "--threads", "2", "--workers", "2", "--device", "cpu"]  # fmt: skip
            started = time.perf_counter()
            peak_mb = peak_rss_mb(command)
            seconds_taken = time.perf_counter() - started
            record(f"predict_peak_rss_mb_{size_gb:g}gb", round(peak_mb), "MB", "flat in volume size",
                   volume="x".join(map(str, shape)), seconds=round(seconds_taken, 1),
                   network="depth 1, 2 channels", workers=2)  # fmt: skip


BENCHMARKS = {
    "predict": predict_speed,
    "predict-small-network": predict_small_network,
    "predict-memory": predict_memory,
    "predict-block-px": predict_block_px,
    "predict-codecs": predict_codecs,
    "predict-raw-cache": predict_raw_cache,
    "predict-isbi-tile": predict_isbi_tile,
    "predict-isbi-tta": predict_isbi_tta,
    "predict-auto": predict_auto_vs_fp32,
}
