"""The settings a step depends on, taken from the workflow's config, and the config's values
typed as its schema asks; without torch, so the Snakefile and the benchmarks can ask cheaply."""

from __future__ import annotations

import re

INTEGER = re.compile(r"[+-]?\d+")


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


def typed_like_schema(value, schema: dict):
    """`value` with the strings that Snakemake's `--config` makes of nested values (`--config
    'train={seed: 1}'` gives the string '1') turned into the integer, number, boolean or null
    the schema asks for there. Strings the schema accepts as strings stay, and a string that is
    none of those stays too, for validation to name."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {
            key: typed_like_schema(item, properties.get(key, {})) for key, item in value.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [typed_like_schema(item, schema["items"]) for item in value]
    if not isinstance(value, str) or accepts_string(value, schema):
        return value
    types = allowed_types(schema)
    if types & {"integer", "number"} and INTEGER.fullmatch(value):
        return int(value)
    if "number" in types:
        try:
            return float(value)
        except ValueError:
            pass
    if "boolean" in types and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if "null" in types and value in ("null", "~"):
        return None
    return value


def declared_types(schema: dict) -> set[str]:
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def allowed_types(schema: dict) -> set[str]:
    """The JSON types a schema (or any branch of its oneOf/anyOf) admits."""
    types = declared_types(schema)
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
        types |= allowed_types(branch)
    return types


def accepts_string(value: str, schema: dict) -> bool:
    """Whether the schema (or a branch of it) takes `value` as a string: of type string, and in
    its enum where it has one. A schema that names no type takes anything."""
    if not allowed_types(schema):
        return True
    branches = [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]
    return any(
        "string" in declared_types(branch) and value in branch.get("enum", [value])
        for branch in branches
    )
