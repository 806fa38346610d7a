"""Validation during training: the validate volumes' slices predicted as the predict step
predicts them (its tiles and regions), and counted by the ISBI 2012 metrics (and instance AP50
where training keeps by it), slice by slice for unetseg/choice.py.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from unetseg import blocks, choice, evaluate, labels
from unetseg.model import UNet
from unetseg.predict import predict_block
from unetseg.samples import Volume

if TYPE_CHECKING:
    from unetseg.train import TrainConfig


def validate(model: UNet, volumes: list[Volume], config: TrainConfig, device) -> dict:
    """Pixel and Rand error (ISBI definitions) on held-out slices, predicted by overlap-tile
    (and instance AP50 where train.keep_by chooses by it)."""
    return metrics(counts(model, volumes, config, device), volumes)


def counts(
    model: UNet, volumes: list[Volume], config: TrainConfig, device
) -> list[choice.SliceCounts]:
    """Each validation slice's counts (choice.SliceCounts), its probabilities predicted as the
    predict step does, region by region."""
    model.eval()
    per_slice = []
    for volume in volumes:
        for z in range(volume.depth):
            image = volume.image(z, cached=False).whole()
            prob = np.empty(image.shape, np.float32)
            for ys, xs in regions(image.shape, config):
                prob[ys, xs] = predict_block(
                    model,
                    image[np.newaxis],
                    0,
                    (ys.start, ys.stop),
                    (xs.start, xs.stop),
                    tile_out(config),
                    config.batch_size,
                    device,
                    config.precision,
                    config.channels_last,
                    tta=config.validate_tta,
                )
            truth = volume.interior(z, cached=False).whole()
            per_slice.append(
                choice.SliceCounts(
                    evaluate.pixel_counts(truth, prob, evaluate.PIXEL_RAND_THRESHOLDS),
                    evaluate.rand_counts(truth, prob, evaluate.PIXEL_RAND_THRESHOLDS)[0],
                    instance_counts(volume, z, prob) if config.keep_by == "ap50" else None,
                )
            )
    model.train()
    return per_slice


def metrics(per_slice: list[choice.SliceCounts], volumes: list[Volume]) -> dict:
    """The validation's pooled errors (choice.errors) and its share of wrong pixels."""
    total = choice.pooled(per_slice)
    n_pixels = sum(math.prod(volume.raw.shape) for volume in volumes)
    return {
        **choice.errors([total]),
        "wrong_fraction": float((total.pixel[:, 1] + total.pixel[:, 2]).min() / n_pixels),
    }


def instance_counts(volume: Volume, z: int, probability: np.ndarray) -> np.ndarray:
    """(TP, FP, FN) at IoU 0.5 of slice z's plain-threshold cells at each validation threshold."""
    truth_ids = labels.cells(np.asarray(volume.labels[z]), volume.kind, volume.ignore)
    return evaluate.ap50_counts(truth_ids, probability, evaluate.PIXEL_RAND_THRESHOLDS)


def tile_out(config: TrainConfig) -> int:
    return config.validate_tile_out or config.tile_out


def regions(shape: tuple[int, int], config: TrainConfig):
    """(y slice, x slice) of the regions validation predicts one by one, as the predict step
    predicts its output chunks."""
    size = config.validate_block_px or max(shape)
    return blocks.chunk_windows(shape, (size, size))


def truths(volumes: list[Volume]) -> list[np.ndarray]:
    """The interior masks of the validate volumes' slices."""
    return [
        volume.interior(z, cached=False).whole() for volume in volumes for z in range(volume.depth)
    ]
