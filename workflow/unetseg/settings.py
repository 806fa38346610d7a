"""The settings a step depends on, taken from the workflow's config; without torch, so the
Snakefile and the benchmarks can ask cheaply."""

from __future__ import annotations


def train_settings(config: dict) -> dict:
    """The config values the train step depends on: the model's and training's, but for where a
    model comes from (`model.pretrained`) and how many GPUs the job asks for (`train.gpus`),
    with `normalize: auto` resolved from the volumes' kinds, for a GroupNorm network the
    predict step's tiles, and whether it averages orientations (`predict.tta`): validation
    predicts as the predict step does."""
    model = {key: value for key, value in config["model"].items() if key != "pretrained"}
    train = {key: value for key, value in config["train"].items() if key != "gpus"}
    if train.get("normalize") == "auto":
        train["normalize"] = auto_normalize(config["volumes"])
    if model.get("norm") == "group":
        # GroupNorm normalises each tile by its own statistics: validation cuts slices as the
        # predict step does, so the model kept is the one that scores best there.
        train["validate_tile_out"] = config["predict"]["tile_out"]
        train["validate_block_px"] = config["predict"]["block_px"]
    if config["predict"].get("tta"):
        # Validation averages the 8 orientations as the predict step will; set only where on,
        # so that configs without it keep their trained models.
        train["validate_tta"] = True
    return {**model, **train}


def auto_normalize(volumes: list[dict]) -> str:
    """Each image's own percentiles where the network learns from unrelated images, else the
    volume's."""
    images = any(
        volume.get("kind") == "images" and volume["role"] in ("train", "validate")
        for volume in volumes
    )
    return "percentile_per_slice" if images else "percentile"
