"""The shipped configurations: the ISBI file must not inherit the demo's values by accident."""

from pathlib import Path

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config

from unetseg import settings, tiling

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
DEMO_ONLY = {"demo", "volumes", "results"}


def leaf_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        keys |= leaf_keys(value, f"{path}.") if isinstance(value, dict) else {path}
    return keys


@pytest.mark.parametrize("name", ["isbi2012.yaml", "dsb2018.yaml"])
def test_a_data_set_config_sets_every_key_the_demo_sets(name):
    # Snakemake loads config/config.yaml and lays --configfile over it: a key only the demo
    # sets (depth 3, 16 channels, tile 148) would silently shrink the paper's network.
    demo = yaml.safe_load((CONFIG / "config.yaml").read_text())
    data_set = yaml.safe_load((CONFIG / name).read_text())
    demo_keys = {key for key in leaf_keys(demo) if key.split(".")[0] not in DEMO_ONLY}
    assert demo_keys - leaf_keys(data_set) == set()


def test_the_dsb_config_holds_its_test_images_out_of_every_choice():
    dsb = yaml.safe_load((CONFIG / "dsb2018.yaml").read_text())
    roles = {v["role"]: v["slices"] for v in dsb["volumes"]}
    assert roles == {"train": [0, 20], "validate": [20, 24], "test": [24, 30]}
    assert all(v["kind"] == "images" for v in dsb["volumes"])
    assert dsb["segment"]["threshold"] == "auto_ap50" and dsb["segment"]["split_h"] == "auto"


def test_isbi_config_is_the_papers_network():
    isbi = yaml.safe_load((CONFIG / "isbi2012.yaml").read_text())
    assert isbi["model"] == {"depth": 4, "base_channels": 64}
    assert isbi["train"]["tile_out"] == 388
    # prediction: one tile covers a 512-px slice (the output equals the paper's tiles', seamless)
    assert (
        tiling.tiles_across(512, isbi["predict"]["block_px"], isbi["predict"]["tile_out"], 4) == 1
    )
    assert isbi["weights"] == {"w0": 10.0, "sigma_px": 5.0}


def test_the_all_slices_overlay_trains_on_every_labelled_slice_and_validates_none():
    overlay = yaml.safe_load((CONFIG / "isbi2012-all-slices.yaml").read_text())
    roles = [(v["role"], v.get("slices")) for v in overlay["volumes"]]
    assert roles == [("train", [0, 20]), ("predict", None)]
    assert isinstance(overlay["segment"]["threshold"], float)  # 'auto' needs a validate volume
    assert overlay["train"]["steps"] > 0


def test_the_gpu_overlay_sizes_its_loader_to_the_job_and_averages_8_versions():
    gpu = yaml.safe_load((CONFIG / "isbi2012-gpu.yaml").read_text())
    assert gpu["train"]["workers"] == "auto" and gpu["predict"]["tta"] is True
    assert "model" not in gpu  # the paper's network, from isbi2012.yaml


def overlaid(*names: str) -> dict:
    """The config Snakemake makes of --configfile NAMES: each file laid over the ones before."""
    config = yaml.safe_load((CONFIG / "config.yaml").read_text())
    for name in names:
        update_config(config, yaml.safe_load((CONFIG / name).read_text()))
    return config


@pytest.mark.parametrize(
    "names",
    [
        ("isbi2012.yaml", "isbi2012-cpu.yaml"),
        ("isbi2012.yaml", "isbi2012-cpu.yaml", "isbi2012-cpu-bf16.yaml"),
        ("isbi2012.yaml", "isbi2012-gpu.yaml"),
        ("isbi2012.yaml", "isbi2012-all-slices.yaml"),
        ("isbi2012.yaml", "isbi2012-pretrained.yaml"),
        ("dsb2018.yaml",),
    ],
)
def test_every_documented_overlay_is_a_valid_config(names):
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(overlaid(*names))


def test_the_bf16_cpu_overlay_changes_only_the_steps_budget_precision_and_layout_of_the_cpu_one():
    fp32 = overlaid("isbi2012.yaml", "isbi2012-cpu.yaml")
    bf16 = overlaid("isbi2012.yaml", "isbi2012-cpu.yaml", "isbi2012-cpu-bf16.yaml")
    changed = {
        key: bf16["train"][key]
        for key in bf16["train"]
        if bf16["train"][key] != fp32["train"].get(key)
    }
    # the recipe bench/recipe.py measured as paper_bf16_14k
    assert changed == {"steps": 14000, "max_minutes": 100, "precision": "auto",
                       "channels_last": "auto"}  # fmt: skip
    assert {k: v for k, v in bf16.items() if k != "train"} == {
        k: v for k, v in fp32.items() if k != "train"
    }


def test_a_groupnorm_network_validates_with_the_predict_steps_tiles():
    """Its output depends on the tiles: the train step then depends on predict.tile_out and
    block_px; the paper's network (tile-independent) does not, so changing them keeps it."""
    from unetseg.settings import train_settings

    dsb = yaml.safe_load((CONFIG / "dsb2018.yaml").read_text())
    chosen = train_settings(dsb)
    assert (chosen["validate_tile_out"], chosen["validate_block_px"]) == (388, 768)
    isbi = yaml.safe_load((CONFIG / "isbi2012.yaml").read_text())
    isbi["volumes"] = []
    assert "validate_tile_out" not in train_settings(isbi)


def test_validation_averages_orientations_where_the_predict_step_does():
    """predict.tta on (the GPU overlay): the train step depends on it and validates so; off
    (the paper's config as shipped), the train settings do not name it, so models trained
    before it existed stay current."""
    from unetseg.settings import train_settings

    gpu = overlaid("isbi2012.yaml", "isbi2012-gpu.yaml")
    assert train_settings(gpu)["validate_tta"] is True
    plain = overlaid("isbi2012.yaml")
    assert not plain["predict"].get("tta") and "validate_tta" not in train_settings(plain)


def test_nested_command_line_values_take_the_schemas_types():
    """Snakemake's --config parses nested values as strings ('train={seed: 1}' gives '1')."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    given = {
        "results": "results/x",
        "train": {"seed": "1", "learning_rate": "0.005", "deterministic": "false",
                  "workers": "auto", "channels_last": "true", "precision": "bf16",
                  "normalize_percentiles": ["1", "99.5"]},
        "segment": {"threshold": "0.4", "split_h": "null"},
        "predict": {"threshold_typo": "3", "tile_out": "many"},
    }  # fmt: skip
    typed = settings.typed_like_schema(given, schema)
    assert typed["train"] == {"seed": 1, "learning_rate": 0.005, "deterministic": False,
                              "workers": "auto", "channels_last": True, "precision": "bf16",
                              "normalize_percentiles": [1, 99.5]}  # fmt: skip
    assert typed["segment"] == {"threshold": 0.4, "split_h": None}
    assert typed["results"] == "results/x"
    # an unknown key and a value of no type the schema takes stay, for validation to name
    assert typed["predict"] == {"threshold_typo": "3", "tile_out": "many"}
    assert settings.typed_like_schema({"segment": {"threshold": "auto"}}, schema) == {
        "segment": {"threshold": "auto"}
    }
