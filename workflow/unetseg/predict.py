"""Overlap-tile prediction (paper §1, Fig. 2), one Dask task per block of output chunks.

Output tiles sit on the network's 2**depth grid and missing context is mirrored in, so the stitched
result equals a single pass over the whole mirror-padded slice, whatever the block layout.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import torch
from dask._task_spec import DataNode, Task, TaskRef  # the task spec of Dask's docs (spec.html)
from dask.delayed import Delayed

from unetseg import blocks, intensity, io, tiling
from unetseg.errors import UnetsegError
from unetseg.model import UNet, autocast, compiled, pick_device, prepare, resolved, to_device
from unetseg.progress import ProgressLog
from unetseg.stores import BLOSC_COMPRESSORS, PROBABILITY_CODEC

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def load_model(
    path: str, device: str = "cpu", channels_last: bool = False, compile_mode: str = "off"
) -> tuple[UNet, dict]:
    """Rebuild the network from a checkpoint, once per process (Dask workers reuse it), under
    torch.compile unless `compile_mode` is "off" (model.COMPILE_MODES)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = UNet(**checkpoint["model_config"])
        model.load_state_dict(checkpoint["model_state"])
    except (OSError, KeyError, RuntimeError, pickle.UnpicklingError) as error:
        raise UnetsegError(f"{path}: not a usable unetseg model ({error})") from error
    model.eval()
    return compiled(prepare(model, torch.device(device), channels_last), compile_mode), checkpoint


def forward_tiles(
    model: UNet,
    tiles: np.ndarray,
    device: torch.device,
    precision: str,
    channels_last: bool,
    tta: bool = False,
    out_dtype: np.dtype | str = np.float32,
    grey_mapping: intensity.Mapping | None = None,
) -> np.ndarray:
    """Probability of the cell interior (softmax class 1) for a batch of (tile_in, tile_in) tiles
    of grey values, as `out_dtype`.

    Tiles travel as they are stored and are normalised by `grey_mapping` (default: the unit
    mapping of their type) on the device (a quarter of the bytes to copy for uint8); the
    probabilities are converted to `out_dtype` there too (half the bytes back for float16), so the
    CPU, which feeds a GPU, does neither.
    With `tta`, the mean over the 8 flips and quarter turns of each tile, each mapped back (the
    authors' ISBI submission averaged these); it costs 8 forward passes.
    """
    with torch.inference_mode(), autocast(device, precision):
        offset, scale = grey_mapping or intensity.unit_mapping(tiles.dtype)
        batch = torch.from_numpy(transferable(tiles)[:, np.newaxis])
        batch = (to_device(batch, device, channels_last=False).float() - offset) / scale
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if not tta:
            prob = torch.softmax(model(batch).float(), dim=1)[:, 1]
        else:
            prob = None
            for flip in (False, True):
                flipped = batch.flip(-1) if flip else batch
                for turns in range(4):
                    turned = torch.softmax(model(flipped.rot90(turns, (-2, -1))).float(), dim=1)
                    turned = turned[:, 1].rot90(-turns, (-2, -1))
                    turned = turned.flip(-1) if flip else turned
                    prob = turned if prob is None else prob + turned
            prob = prob / 8
    return prob.to(torch_dtype(out_dtype)).cpu().numpy()


def transferable(tiles: np.ndarray) -> np.ndarray:
    """The tiles in a type torch supports on every device: uint16 and uint32 (only "limited
    support" in torch) become the next wider signed type, exactly; uint64 becomes float64."""
    wider = {2: np.int32, 4: np.int64, 8: np.float64}
    if tiles.dtype.kind == "u" and tiles.dtype.itemsize > 1:
        return tiles.astype(wider[tiles.dtype.itemsize])
    return tiles


def torch_dtype(dtype: np.dtype | str) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


def predict_block(
    model: UNet,
    raw,
    z: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    tile_out: int,
    batch_size: int = 1,
    device: torch.device | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    tta: bool = False,
    out_dtype: np.dtype | str = np.float32,
    raw_chunks: blocks.DecodedChunks | None = None,
    grey_mapping: intensity.Mapping | None = None,
) -> np.ndarray:
    """Interior probability of raw[z, rows, cols] by overlap-tile, as `out_dtype`; `raw` is any
    sliceable array of grey values (a Zarr array's chunks kept decoded in `raw_chunks`),
    normalised by `grey_mapping` (default: the unit mapping of its type)."""
    device = device or torch.device("cpu")
    depth = model.config["depth"]
    tile_in = tiling.input_size(tile_out, depth)
    origins_y = tiling.tile_origins(*rows, tile_out, depth)
    origins_x = tiling.tile_origins(*cols, tile_out, depth)
    padded = mirrored_region(
        raw,
        z,
        tiling.input_span(origins_y, tile_out, depth),
        tiling.input_span(origins_x, tile_out, depth),
        raw_chunks,
    )

    out = np.empty((rows[1] - rows[0], cols[1] - cols[0]), out_dtype)
    tiles = [(oy, ox) for oy in origins_y for ox in origins_x]
    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first : first + batch_size]
        inputs = np.stack(
            [
                padded[
                    oy - origins_y[0] : oy - origins_y[0] + tile_in,
                    ox - origins_x[0] : ox - origins_x[0] + tile_in,
                ]
                for oy, ox in chunk
            ]
        )
        for (oy, ox), prob in zip(
            chunk,
            forward_tiles(
                model, inputs, device, precision, channels_last, tta, out_dtype, grey_mapping
            ),
            strict=True,
        ):
            y0, y1 = max(oy, rows[0]), min(oy + tile_out, rows[1])
            x0, x1 = max(ox, cols[0]), min(ox + tile_out, cols[1])
            out[y0 - rows[0] : y1 - rows[0], x0 - cols[0] : x1 - cols[0]] = prob[
                y0 - oy : y1 - oy, x0 - ox : x1 - ox
            ]
    return out


def mirrored_region(
    raw,
    z: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    raw_chunks: blocks.DecodedChunks | None = None,
) -> np.ndarray:
    """raw[z, rows, cols] as stored, read once, where the parts outside the slice mirror it as
    numpy's 'reflect' padding of the whole slice would (edge not repeated)."""
    height, width = raw.shape[1:]
    y0, y1, x0, x1 = max(rows[0], 0), min(rows[1], height), max(cols[0], 0), min(cols[1], width)
    pads = ((y0 - rows[0], rows[1] - y1), (x0 - cols[0], cols[1] - x1))
    if max(pads[0]) < y1 - y0 and max(pads[1]) < x1 - x0:
        region = blocks.read_block(raw, (z, y0, x0), (1, y1 - y0, x1 - x0), raw_chunks)[0]
        return np.pad(region, pads, mode="reflect") if any(map(any, pads)) else region
    # Margins wider than the part inside the slice (slices smaller than the context): fold the
    # indices, and read the span they reach.
    index_y, index_x = (
        tiling.reflect_indices(*span, n) for span, n in ((rows, height), (cols, width))
    )
    span_y, span_x = (index.max() + 1 - index.min() for index in (index_y, index_x))
    region = blocks.read_block(
        raw, (z, index_y.min(), index_x.min()), (1, span_y, span_x), raw_chunks
    )[0]
    return region[np.ix_(index_y - index_y.min(), index_x - index_x.min())]


def predict_whole_slice(
    model: UNet,
    image: np.ndarray,
    precision: str = "fp32",
    grey_mapping: intensity.Mapping | None = None,
) -> np.ndarray:
    """Reference: one network pass over the whole mirror-padded slice (for tests and validation)."""
    depth = model.config["depth"]
    pad = [tiling.whole_image_padding(n, depth) for n in image.shape]
    padded = np.pad(image, pad, mode="reflect")
    prob = forward_tiles(
        model, padded[np.newaxis], torch.device("cpu"), precision, False, grey_mapping=grey_mapping
    )[0]
    return prob[: image.shape[0], : image.shape[1]]


def chunk_blocks(shape: tuple[int, int, int], chunks: tuple[int, int, int]):
    """(z, rows, cols) of every output chunk, one slice deep."""
    for z in range(shape[0]):
        for ys, xs in blocks.chunk_windows(shape[1:], chunks[1:]):
            yield z, (ys.start, ys.stop), (xs.start, xs.stop)


SCHEDULERS = ("threads", "processes", "sync", "distributed", "slurm")
# The most decoded input chunks a worker keeps (raw_cache_bytes), whatever the volume's size.
RAW_CACHE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class BlockTask:
    """Everything a worker needs to predict one output chunk, but the block and its slice's grey
    mapping; the model is loaded from its path, once per worker process (load_model is cached),
    never shipped with each task."""

    model_path: str
    tile_out: int
    batch_size: int
    device: str
    precision: str
    channels_last: bool
    tta: bool
    torch_threads: int
    compile_mode: str = "off"

    def __call__(
        self, raw, raw_chunks, target, done_folder: Path, grey_mapping, z: int, rows, cols
    ) -> None:
        torch.set_num_threads(self.torch_threads)  # also in worker processes: no oversubscription
        model, _ = load_model(self.model_path, self.device, self.channels_last, self.compile_mode)
        probability = predict_block(
            model, raw, z, rows, cols, self.tile_out, self.batch_size,
            torch.device(self.device), self.precision, self.channels_last, self.tta, target.dtype,
            raw_chunks, grey_mapping,
        )  # fmt: skip
        blocks.write_block(target, (z, rows[0], cols[0]), probability[np.newaxis])
        (done_folder / block_name(z, rows, cols)).touch()  # after the write: the chunk is whole


def block_name(z: int, rows, cols) -> str:
    return f"{z}_{rows[0]}_{cols[0]}"


def predict_volume(
    model_path: str | os.PathLike,
    raw_path: str | os.PathLike,
    out_path: str | os.PathLike,
    tile_out: int = 388,
    batch_size: int = 1,
    block_px: int = 768,
    scheduler: str = "threads",
    workers: int = 1,
    threads: int = 1,
    precision: str = "fp32",
    channels_last: bool | str = False,
    device: str = "auto",
    out_dtype: str = "float16",
    expect_architecture: dict | None = None,
    tta: bool = False,
    scheduler_address: str | None = None,
    compression: dict | None = None,
    compile_mode: str = "off",
) -> None:
    """Predict a raw OME-Zarr volume into a probability OME-Zarr, one Dask task per output chunk.

    `expect_architecture` (e.g. {"depth": 4, "base_channels": 64}) must match the model's.
    `compression` is the store's Blosc codec, PROBABILITY_CODEC unless given. `compile_mode`:
    torch.compile's (model.COMPILE_MODES; measured by `bench gpu-limits`, not yet a config key).
    Chunks are written into `<out>.partial` and recorded when whole, so a killed prediction
    resumes where it stopped; the store is renamed to `out_path` when every chunk is there.
    """
    if scheduler not in SCHEDULERS:  # before anything is written
        raise UnetsegError(
            f"predict.scheduler: '{scheduler}' is not one of {', '.join(SCHEDULERS)}"
        )
    compression = compression or PROBABILITY_CODEC
    if compression["cname"] not in BLOSC_COMPRESSORS:
        raise UnetsegError(
            f"predict.compressor: '{compression['cname']}' is not one of "
            f"{', '.join(BLOSC_COMPRESSORS)}"
        )
    torch_device = pick_device(device)
    precision, channels_last = resolved(precision, channels_last, torch_device)
    torch_threads = max(1, threads // workers)  # each task sets it in its own worker
    model, checkpoint = load_model(str(model_path), str(torch_device), channels_last, compile_mode)
    for key, value in (expect_architecture or {}).items():
        if model.config[key] != value:
            raise UnetsegError(
                f"model.pretrained: {model_path} has {key} {model.config[key]}, "
                f"but the config says model.{key}: {value}"
            )
    tiling.check_output_size(tile_out, model.config["depth"], "predict.tile_out")
    raw = io.open_zarr(raw_path)
    warn_if_tiles_overhang(raw.shape[1:], block_px, tile_out, model.config["depth"])
    warn_if_tiles_normalise_apart(model.config, raw.shape[1:], block_px, tile_out)
    grey_mappings = model_grey_mappings(raw, checkpoint)
    chunks = (1, block_px, block_px)
    attrs = {
        "model": str(Path(model_path).resolve()),
        "model_sha256": io.file_sha256(model_path),
        "model_config": checkpoint["model_config"],
        "tile_out": tile_out,
        "precision": precision,
        "test_time_augmentation": tta,
        "grey_mapping": recorded_mapping(grey_mappings),
        "dtype": out_dtype,
        "probability_of": "cell interior",
        "compression": compression,
    }
    task = BlockTask(
        str(model_path), tile_out, batch_size, str(torch_device), precision,
        channels_last, tta, torch_threads, compile_mode,
    )  # fmt: skip
    started = time.perf_counter()
    partial = Path(out_path).with_name(Path(out_path).name + ".partial")
    with io.bulk_writes():  # zarr takes an array's write settings when it is opened
        target, done_folder = open_partial(partial, raw.shape, out_dtype, chunks, raw_path, attrs)
    every_block = list(chunk_blocks(raw.shape, target.chunks))
    done = set(os.listdir(done_folder))  # one listing, not a file test per block
    todo = [b for b in every_block if block_name(*b) not in done]
    if len(todo) < len(every_block):
        log.info(
            "resuming %s: %d of %d chunks already done",
            partial,
            len(every_block) - len(todo),
            len(every_block),
        )
    token = dask.base.tokenize(str(partial.resolve()), attrs)[:12]
    cache_bytes = raw_cache_bytes(raw, target.chunks[1], model.config["depth"])
    raw_chunks = blocks.DecodedChunks(cache_bytes)
    every_task = block_tasks(
        task, raw, raw_chunks, target, done_folder, grey_mappings, todo, f"predict-{token}"
    )
    already = len(every_block) - len(todo)
    px_per_chunk = int(np.prod(raw.shape)) / len(every_block)
    with (
        dask_scheduler(scheduler, workers, threads, scheduler_address) as compute_options,
        # chunks done, counted by their marker files: the workers may be other processes
        ProgressLog("predict", "chunks", len(todo), px_per_chunk,
                    lambda: len(os.listdir(done_folder)) - already),
    ):  # fmt: skip
        try:
            dask.compute(every_task, **compute_options)
        except OSError as error:
            io.raise_if_disk_full(error, partial, "the chunks done so far are kept for the rerun")
            raise
    io.remove_path(done_folder)
    with io.atomic_output(out_path) as tmp:
        os.replace(partial, tmp)
    seconds = time.perf_counter() - started
    pixels = int(np.prod(raw.shape))
    log.info(
        "predicted %d px in %.1f s (%.2f Mpx/s) into %s",
        pixels,
        seconds,
        pixels / seconds / 1e6,
        out_path,
    )


def model_grey_mappings(raw, checkpoint: dict) -> list[intensity.Mapping]:
    """Each slice's normalisation under the model's method (models from before the method was
    recorded were trained with 'unit')."""
    settings = checkpoint.get("train_config", {})
    method = settings.get("normalize", "unit")
    percentiles = settings.get("normalize_percentiles", intensity.DEFAULT_PERCENTILES)
    mappings = intensity.slice_mappings(raw, method, percentiles)
    log.info("grey values %s", intensity.describe(mappings, method))
    return mappings


def recorded_mapping(mappings: list[intensity.Mapping]) -> dict:
    """The store's record: one offset and scale, or a list of each where slices differ."""
    offsets, scales = (list(values) for values in zip(*mappings, strict=True))
    if len(set(mappings)) == 1:
        return {"offset": offsets[0], "scale": scales[0]}
    return {"offset": offsets, "scale": scales}


def warn_if_tiles_overhang(size, block_px: int, tile_out: int, depth: int) -> None:
    """Warn when the chunks make the network compute much more than the slices need."""
    cost = tiling.blocking_cost(size, block_px, tile_out, depth)
    if cost > 1.1:
        stride = tiling.tile_stride(tile_out, depth)
        log.warning(
            "predict.block_px %d with tile_out %d takes %.2fx the tiles these slices need "
            "(tiles hang over the chunks' edges); a multiple of the tile stride %d, such as %d, "
            "does not",
            block_px, tile_out, cost, stride, max(stride, round(block_px / stride) * stride),
        )  # fmt: skip


def warn_if_tiles_normalise_apart(model_config: dict, size, block_px: int, tile_out: int) -> None:
    """GroupNorm normalises each tile by its own statistics, so, unlike the paper's network, a
    slice cut into several tiles is not predicted as it is whole (BENCHMARKS.md, "GroupNorm and
    overlap-tile prediction"): say so where it happens."""
    if model_config.get("norm") != "group":
        return
    depth = model_config["depth"]
    tiles = [tiling.tiles_across(length, block_px, tile_out, depth) for length in size]
    if max(tiles) > 1:
        log.warning(
            "model.norm group: each of the %d x %d tiles of a slice is normalised by its own "
            "statistics, so the probabilities depend on predict.tile_out and block_px (on ISBI "
            "2012 up to 0.74 apart between 132- and 516-px tiles, mean 0.045); use the largest "
            "tiles that fit, alike in every run you compare",
            *tiles,
        )


def raw_cache_bytes(raw, block_px: int, depth: int) -> int:
    """How much of the decoded input chunks each worker keeps. A block's context reaches into
    up to 8 neighbouring chunks, which the neighbouring blocks read again (predict-raw-cache).
    Blocks run row by row, so what is read again lies in the chunks under one row of blocks
    (its input, block and context, starts off the chunk grid: one row of chunks more); one row
    more leaves room for the blocks running at the same time. Chunks that hold several slices
    are read again by the next slice's blocks: then a whole slice of them. At most
    RAW_CACHE_BYTES: enough for 512-px uint8 chunks and 768-px blocks on slices up to 32 000 px
    wide."""
    if raw.chunks[0] > 1:
        chunk_rows = -(-raw.shape[1] // raw.chunks[1])
    else:
        chunk_rows = -(-(block_px + 2 * tiling.context_px(depth)) // raw.chunks[1]) + 2
    chunks_across = -(-raw.shape[2] // raw.chunks[2])
    chunk_bytes = int(np.prod(raw.chunks)) * raw.dtype.itemsize
    return min(RAW_CACHE_BYTES, chunk_rows * chunks_across * chunk_bytes)


def block_tasks(
    task: BlockTask, raw, raw_chunks, target, done_folder: Path, grey_mappings, todo, name: str
) -> Delayed:
    """One Dask task per block, as one graph in Dask's task spec: each task is named by the block
    (as Dask's dashboard shows it), and the arrays, opened once here, are one node each. Built
    with dask.delayed instead, the graph cost 0.5 ms a task to build and cull (measured with
    cProfile on 1024 blocks), a few % of a GPU's time per block.
    Each task takes its slice's grey mapping. `name` keeps two predictions on one Dask cluster
    apart."""
    raw_node, target_node = DataNode(f"{name}-raw", raw), DataNode(f"{name}-target", target)
    cache_node = DataNode(f"{name}-raw-chunks", raw_chunks)
    graph = {node.key: node for node in (raw_node, cache_node, target_node)}
    finished = []
    for block in todo:
        key = f"{name}-{block_name(*block)}"
        graph[key] = Task(
            key, task, raw_node.ref(), cache_node.ref(), target_node.ref(), done_folder,
            grey_mappings[block[0]], *block,
        )  # fmt: skip
        finished.append(TaskRef(key))
    graph[name] = Task(name, count_done, *finished)
    return Delayed(name, graph)


def count_done(*results) -> int:
    return len(results)


def open_partial(partial: Path, shape, dtype, chunks, raw_path, attrs: dict):
    """The partial store of an interrupted run with the same settings, or a fresh one."""
    done_folder = partial / "done_chunks"
    if partial.exists():
        try:
            if io.zarr_attrs(partial) == json.loads(json.dumps(attrs)) and done_folder.is_dir():
                return io.open_zarr(partial, mode="r+"), done_folder
        except Exception:  # noqa: BLE001  (a broken partial store is simply started again)
            pass
        io.remove_path(partial)
    target = io.create_ome_zarr(
        partial, shape, dtype, chunks, io.voxel_size(raw_path), attrs,
        compression=attrs["compression"], quantise_to_uint8=dtype == "uint8",
    )  # fmt: skip
    done_folder.mkdir()
    return target, done_folder


@contextlib.contextmanager
def dask_scheduler(name: str, workers: int, threads: int, address: str | None = None):
    """dask.compute options for `name`: the local schedulers, a dask.distributed cluster (a
    LocalCluster, or the one at `address`), or dask-jobqueue's SLURMCluster (one job per worker)."""
    if name in ("threads", "processes", "sync"):
        yield {"scheduler": name, "num_workers": workers}
        return
    from dask.distributed import Client, LocalCluster

    if name == "distributed" and address:
        with Client(address) as client:
            yield {"scheduler": client}
        return
    if name == "distributed":
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    else:
        cluster = slurm_cluster(workers, threads)
    with cluster, Client(cluster) as client:
        client.wait_for_workers(workers, timeout=600)
        jobs = sorted(filter(None, client.run(slurm_job_id).values()))
        log.info(
            "Dask %s cluster up: %d workers%s", name, workers, f", SLURM jobs {jobs}" * bool(jobs)
        )
        yield {"scheduler": client}


def slurm_job_id() -> str | None:
    """Run on a worker (a module function: a pickled `os.environ.get` would carry our environ)."""
    return os.environ.get("SLURM_JOB_ID")


def slurm_cluster(workers: int, threads: int):
    """dask-jobqueue workers as SLURM jobs, one GPU each; site options come from dask's config
    (~/.config/dask/jobqueue.yaml: queue, account, memory, job_extra_directives)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as error:
        raise UnetsegError(
            "predict.scheduler slurm needs dask-jobqueue: pip install 'unetseg[slurm]'"
        ) from error
    import dask.config

    options = {"cores": max(1, threads // workers), "processes": 1}
    if not dask.config.get("jobqueue.slurm.memory", None):
        options["memory"] = "8GB"
    cluster = SLURMCluster(**options)
    cluster.scale(jobs=workers)
    return cluster
