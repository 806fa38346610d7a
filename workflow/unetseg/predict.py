"""Overlap-tile prediction (paper §1, Fig. 2), one Dask task per block of output chunks.

Output tiles sit on the network's 2**depth grid and missing context is mirrored in, so the stitched
result equals a single pass over the whole mirror-padded slice, whatever the block layout.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import time
from pathlib import Path

import dask
import numpy as np
import torch

from unetseg import io, tiling
from unetseg.errors import UnetsegError
from unetseg.model import UNet, autocast, pick_device, prepare, to_device

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def load_model(path: str, device: str = "cpu", channels_last: bool = False) -> tuple[UNet, dict]:
    """Rebuild the network from a checkpoint, once per process (Dask workers reuse it)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = UNet(**checkpoint["model_config"])
        model.load_state_dict(checkpoint["model_state"])
    except (OSError, KeyError, RuntimeError, pickle.UnpicklingError) as error:
        raise UnetsegError(f"{path}: not a usable unetseg model ({error})") from error
    model.eval()
    return prepare(model, torch.device(device), channels_last), checkpoint


def forward_tiles(
    model: UNet, tiles: np.ndarray, device: torch.device, precision: str, channels_last: bool
) -> np.ndarray:
    """Probability of the cell interior (softmax class 1) for a batch of (tile_in, tile_in) tiles."""
    with torch.inference_mode(), autocast(device, precision):
        batch = to_device(torch.from_numpy(tiles[:, np.newaxis]), device, channels_last)
        logits = model(batch).float()
    return torch.softmax(logits, dim=1)[:, 1].cpu().numpy()


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
) -> np.ndarray:
    """Interior probability of raw[z, rows, cols] by overlap-tile; `raw` is any sliceable array."""
    device = device or torch.device("cpu")
    depth = model.config["depth"]
    context = tiling.context_px(depth)
    tile_in = tiling.input_size(tile_out, depth)
    origins_y = tiling.tile_origins(*rows, tile_out, depth)
    origins_x = tiling.tile_origins(*cols, tile_out, depth)
    # Read the block with its halo once; mirror indices reproduce global 'reflect' padding.
    index_y = tiling.reflect_indices(
        origins_y[0] - context, origins_y[-1] - context + tile_in, raw.shape[1]
    )
    index_x = tiling.reflect_indices(
        origins_x[0] - context, origins_x[-1] - context + tile_in, raw.shape[2]
    )
    y_lo, x_lo = index_y.min(), index_x.min()
    region = io.to_unit_range(
        np.asarray(raw[z, y_lo : index_y.max() + 1, x_lo : index_x.max() + 1])
    )
    padded = region[np.ix_(index_y - y_lo, index_x - x_lo)]

    out = np.empty((rows[1] - rows[0], cols[1] - cols[0]), np.float32)
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
            chunk, forward_tiles(model, inputs, device, precision, channels_last), strict=True
        ):
            y0, y1 = max(oy, rows[0]), min(oy + tile_out, rows[1])
            x0, x1 = max(ox, cols[0]), min(ox + tile_out, cols[1])
            out[y0 - rows[0] : y1 - rows[0], x0 - cols[0] : x1 - cols[0]] = prob[
                y0 - oy : y1 - oy, x0 - ox : x1 - ox
            ]
    return out


def predict_whole_slice(model: UNet, image: np.ndarray, precision: str = "fp32") -> np.ndarray:
    """Reference: one network pass over the whole mirror-padded slice (for tests and validation)."""
    depth = model.config["depth"]
    pad = [tiling.whole_image_padding(n, depth) for n in image.shape]
    padded = np.pad(io.to_unit_range(image), pad, mode="reflect")
    prob = forward_tiles(model, padded[np.newaxis], torch.device("cpu"), precision, False)[0]
    return prob[: image.shape[0], : image.shape[1]]


def chunk_blocks(shape: tuple[int, int, int], chunks: tuple[int, int, int]):
    """(z, rows, cols) of every output chunk, one slice deep."""
    for z in range(shape[0]):
        for y in range(0, shape[1], chunks[1]):
            for x in range(0, shape[2], chunks[2]):
                yield z, (y, min(y + chunks[1], shape[1])), (x, min(x + chunks[2], shape[2]))


def predict_volume(
    model_path: str | os.PathLike,
    raw_path: str | os.PathLike,
    out_path: str | os.PathLike,
    tile_out: int = 388,
    batch_size: int = 1,
    block_px: int = 512,
    scheduler: str = "threads",
    workers: int = 1,
    threads: int = 1,
    precision: str = "fp32",
    channels_last: bool = False,
    device: str = "auto",
    out_dtype: str = "float16",
    expect_architecture: dict | None = None,
) -> None:
    """Predict a raw OME-Zarr volume into a probability OME-Zarr, one Dask task per output chunk.

    `expect_architecture` (e.g. {"depth": 4, "base_channels": 64}) must match the model's.
    """
    torch_device = pick_device(device)
    torch.set_num_threads(max(1, threads // workers))
    model, checkpoint = load_model(str(model_path), str(torch_device), channels_last)
    for key, value in (expect_architecture or {}).items():
        if model.config[key] != value:
            raise UnetsegError(
                f"model.pretrained: {model_path} has {key} {model.config[key]}, "
                f"but the config says model.{key}: {value}"
            )
    tiling.check_output_size(tile_out, model.config["depth"], "predict.tile_out")
    raw = io.open_zarr(raw_path)
    chunks = (1, block_px, block_px)
    attrs = {
        "model": str(Path(model_path).resolve()),
        "model_config": checkpoint["model_config"],
        "tile_out": tile_out,
        "precision": precision,
        "probability_of": "cell interior",
    }

    def predict_chunk(target, z, rows, cols):
        target[z, slice(*rows), slice(*cols)] = predict_block(
            model, raw, z, rows, cols, tile_out, batch_size, torch_device, precision, channels_last
        )

    started = time.perf_counter()
    with io.atomic_output(out_path) as tmp:
        target = io.create_ome_zarr(
            tmp, raw.shape, out_dtype, chunks, io.voxel_size(raw_path), attrs
        )
        tasks = [
            dask.delayed(predict_chunk)(target, *block)
            for block in chunk_blocks(raw.shape, target.chunks)
        ]
        dask.compute(*tasks, scheduler=scheduler, num_workers=workers)
    seconds = time.perf_counter() - started
    pixels = int(np.prod(raw.shape))
    log.info(
        "predicted %d px in %.1f s (%.2f Mpx/s) into %s",
        pixels,
        seconds,
        pixels / seconds / 1e6,
        out_path,
    )
