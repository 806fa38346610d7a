"""The settings a step depends on, taken from the workflow's config; without torch, so the
Snakefile and the benchmarks can ask cheaply."""

from __future__ import annotations


def train_settings(config: dict) -> dict:
    """The config values the train step depends on: the model's and training's, but for where a
    model comes from (`model.pretrained`) and how many GPUs the job asks for (`train.gpus`)."""
    model = {key: value for key, value in config["model"].items() if key != "pretrained"}
    train = {key: value for key, value in config["train"].items() if key != "gpus"}
    return {**model, **train}
