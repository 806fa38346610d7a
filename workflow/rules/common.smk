# Config validation, the volume table and path helpers; rules call only these.
import json
import os
import shlex
import sys
from pathlib import Path

import jsonschema
import yaml
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
# none of these imports torch: keeps the DAG fast
from unetseg import headline, intensity, runlock, settings, tiling  # noqa: E402
from unetseg.errors import UnetsegError  # noqa: E402
from unetseg.stores import is_zarr  # noqa: E402

CONFIG_SCHEMA = Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"


def fail(message):
    raise ValueError(f"config: {message}")


def validate_config():
    """One line naming the offending key, then Snakemake's validation fills the defaults."""
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    config.update(settings.typed_like_schema(config, schema))
    errors = jsonschema.Draft202012Validator(schema).iter_errors(config)
    error = jsonschema.exceptions.best_match(errors)
    if error is None:
        return validate(config, CONFIG_SCHEMA)
    path = [str(part) for part in error.absolute_path]
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema["properties"]))
        allowed = ", ".join(error.schema["properties"])
        fail(f"{'.'.join([*path, unknown[0]])}: unknown key (allowed here: {allowed})")
    fail(f"{'.'.join(path) or '(top level)'}: {error.message}")


validate_config()

RESULTS = config["results"]
VOLUMES = {volume["name"]: volume for volume in config["volumes"]}


def check_config():
    if len(VOLUMES) != len(config["volumes"]):
        fail("volumes: every volume needs a unique name")
    for name, volume in VOLUMES.items():
        if volume["role"] in ("train", "validate", "test") and "labels" not in volume:
            fail(f"volumes: '{name}' has role {volume['role']} but no labels")
        if "ignore_label" in volume and volume["role"] != "train":
            fail(
                f"volumes: '{name}' has an ignore_label, but only train volumes may be sparsely "
                f"annotated ({volume['role']} volumes are scored on every pixel)"
            )
        for key in ("slices", "channel"):
            if is_zarr(volume["raw"]) and key in volume:
                fail(f"volumes: '{name}' raw is a Zarr store, used in place and whole; drop {key}")
        start_stop = volume.get("slices")
        if start_stop and start_stop[0] >= start_stop[1]:
            fail(f"volumes: '{name}' slices must be [start, stop) with start < stop")
    if not config["model"]["pretrained"] and not volumes_with_role("train"):
        fail("volumes: no volume has role train, and model.pretrained is not set")
    segment = config["segment"]
    if segment["threshold"] in ("auto", "auto_ap50") and not volumes_with_role("validate"):
        fail(
            f"segment.threshold: '{segment['threshold']}' needs a volume with role validate; "
            "set a number"
        )
    if segment["split_h"] == "auto" and segment["threshold"] != "auto_ap50":
        fail("segment.split_h: 'auto' is chosen with the threshold; set threshold: auto_ap50")
    if segment["split_h"] is not None and segment["watershed_seed_threshold"] is not None:
        fail("segment: set watershed_seed_threshold or split_h, not both")
    depth = config["model"]["depth"]
    try:
        for stage in ("train", "predict"):
            tiling.check_output_size(config[stage]["tile_out"], depth, f"{stage}.tile_out")
        intensity.check_percentiles(config["train"]["normalize_percentiles"])
    except Exception as error:
        fail(str(error))


# Volumes scored against their labels: validate volumes (which also choose the kept model and an
# 'auto' threshold) and test volumes (held out from both).
EVALUATED = ("validate", "test")


def volumes_with_role(*roles):
    return [name for name, volume in VOLUMES.items() if volume["role"] in roles]


def evaluated_roles():
    """{name: role} of the volumes scored against labels (validate and test)."""
    return {name: VOLUMES[name]["role"] for name in volumes_with_role(*EVALUATED)}


check_config()


wildcard_constraints:
    volume="|".join(VOLUMES) or "NO_VOLUMES",


# --- paths ---------------------------------------------------------------------------------


def volume_path(volume, name):
    return f"{RESULTS}/{volume}/{name}"


def log_path(rule_name, volume="all"):
    return f"{RESULTS}/logs/{rule_name}/{volume}.log"


def benchmark_path(rule_name, volume="all"):
    return f"{RESULTS}/benchmarks/{rule_name}/{volume}.tsv"


def memory_mb(base):
    """A rule's memory, doubled at each retry (Snakemake's attempt 1, 2, 3): a job the scheduler
    killed for its memory (OUT_OF_MEMORY) asks for more. The SLURM profile scales its own
    train and predict sizes the same way."""
    return lambda wildcards, attempt: base * 2 ** (attempt - 1)


def runtime_minutes(base):
    """A rule's time limit, grown by `base` at each retry: a job killed at its limit (TIMEOUT)
    asks for more; train resumes from its checkpoint."""
    return lambda wildcards, attempt: base * attempt


def channels_last_option(stage):
    """--channels-last as the CLI takes it; none for false, as before 'auto' existed (so that
    the params of finished runs still match)."""
    value = config[stage]["channels_last"]
    return "" if value is False else f"--channels-last {str(value).lower()}"


def model_path():
    return config["model"]["pretrained"] or f"{RESULTS}/model/model.pt"


def raw_store(volume):
    """A volume's raw Zarr: the user's own store, used in place, or the one `chunk_raw` makes."""
    raw = VOLUMES[volume]["raw"]
    return raw if is_zarr(raw) else volume_path(volume, "raw.zarr")


def raw_store_of(wildcards):
    return raw_store(wildcards.volume)


def source_tiff(wildcards, kind):
    return VOLUMES[wildcards.volume][kind]


def truth_store_of(wildcards):
    """A volume's ground-truth label store, where it has labels ([] otherwise)."""
    if "labels" not in VOLUMES[wildcards.volume]:
        return []
    return volume_path(wildcards.volume, "labels.zarr")


def raw_tiff(wildcards):
    return source_tiff(wildcards, "raw")


def labels_tiff(wildcards):
    return source_tiff(wildcards, "labels")


def slice_option(wildcards):
    start_stop = VOLUMES[wildcards.volume].get("slices")
    return f"--slices {start_stop[0]} {start_stop[1]}" if start_stop else ""


def channel_option(option):
    """`option N` for a volume with a channel (--channel for its raw, --match-channel for the
    raw its labels are checked against)."""

    def render(wildcards):
        channel = VOLUMES[wildcards.volume].get("channel")
        return "" if channel is None else f"{option} {channel}"

    return render


def ignore_label_option(wildcards):
    ignore = VOLUMES[wildcards.volume].get("ignore_label")
    return "" if ignore is None else f"--ignore-label {ignore}"


def voxel_size_option(wildcards):
    size = VOLUMES[wildcards.volume].get("voxel_size")
    return f"--voxel-size {','.join(str(v) for v in size)}" if size else ""


def stores(role_names, store):
    return [volume_path(name, store) for name in role_names]


def train_settings():
    """Training settings as JSON: exactly the config the train step depends on."""
    return json.dumps(settings.train_settings(config), sort_keys=True)


def shards_option():
    shards = config["chunk"]["shard_shape"]
    return f"--shards {','.join(str(n) for n in shards)}" if shards else ""


def scheduler_address_option():
    address = config["predict"]["scheduler_address"]
    return f"--scheduler-address {address}" if address else ""


def threshold_inputs(wildcards):
    """The validation metrics that an 'auto' segmentation threshold is chosen from."""
    if config["segment"]["threshold"] == "auto":
        return stores(volumes_with_role("validate"), "metrics.json")
    return []


TUNED_SEGMENTATION = f"{RESULTS}/segment_tuned.json"


def tuned_inputs(wildcards):
    """The settings tune_segment chose on the validate volumes, where segment takes them."""
    return [TUNED_SEGMENTATION] if config["segment"]["threshold"] == "auto_ap50" else []


def tuned_option(wildcards, input):
    return f"--tuned {input.tuned}" if input.tuned else ""


def split_option():
    split_h = config["segment"]["split_h"]
    return "" if split_h is None else f"--split-h {split_h}"


def architecture_option():
    """A pretrained model must have the architecture that the config describes."""
    if not config["model"]["pretrained"]:
        return ""
    expected = {key: config["model"][key] for key in ("depth", "base_channels")}
    return f"--expect-architecture '{json.dumps(expected)}'"


def watershed_option():
    seed = config["segment"]["watershed_seed_threshold"]
    return "" if seed is None else f"--watershed-seed {seed}"


def run_report_inputs():
    """Everything else the run makes, so the run summary sees every job's benchmark file."""
    return [path for path in final_outputs() if not path.startswith(f"{RESULTS}/report/run.")]


def export_sample():
    """The raw store whose first slice gives a model package its test tile: the first validate
    volume's (data the model was not trained on), else the first train volume's."""
    names = volumes_with_role("validate") or volumes_with_role("train") or list(VOLUMES)
    return raw_store(names[0]) if names else []


def final_outputs():
    evaluated = volumes_with_role(*EVALUATED)
    predicted = volumes_with_role(*EVALUATED, "predict")
    outputs = stores(predicted, "segmentation.tif") + stores(predicted, "view.zarr")
    outputs += [f"{RESULTS}/report/{name}/volume.png" for name in predicted]
    outputs += stores(evaluated, "metrics.json")
    outputs += [f"{RESULTS}/metrics_summary.tsv"] if evaluated else []
    outputs += [f"{RESULTS}/report/{name}/prediction.png" for name in evaluated]
    outputs += [f"{RESULTS}/report/{name}/metrics.png" for name in evaluated]
    outputs += [f"{RESULTS}/report/{name}/instances.png" for name in evaluated]
    if not config["model"]["pretrained"]:
        outputs += [f"{RESULTS}/report/training.png", f"{RESULTS}/model/bioimageio.zip"]
        for name in volumes_with_role("train"):
            outputs += [
                f"{RESULTS}/report/{name}/{figure}.png" for figure in ("data", "augmentation")
            ]
    return outputs + [f"{RESULTS}/report/run.png", f"{RESULTS}/report/run.html"]


def training_choice():
    """What the train step's choice of the kept model is worth (headline.training_choice); ''
    with a pretrained model, which this folder's training (if any) did not make."""
    return "" if config["model"]["pretrained"] else headline.training_choice(RESULTS)


def front_page():
    """The report's description: workflow.rst, with the evaluated volumes' headline once they
    are scored (written under the results folder; the template alone before)."""
    template = Path(workflow.basedir) / "workflow/report/workflow.rst"
    rows = headline.volume_rows(RESULTS, evaluated_roles())
    if not rows:
        return str(template)
    front = headline.write_front_page(
        template, f"{RESULTS}/report/front.rst", rows, training_choice()
    )
    return str(front.resolve())


def print_metrics_summary():
    """Printed when the run succeeds: the kept network's choice (training_choice), then the
    headline metrics of every evaluated volume."""
    if choice := training_choice():
        print(choice, file=sys.stderr)
    for name in volumes_with_role(*EVALUATED):
        path = Path(volume_path(name, "metrics.json"))
        if path.exists():
            metrics = json.loads(path.read_text())
            print(
                f"{name}: pixel error {metrics['pixel_error']:.4f}, "
                f"Rand error {metrics['rand_error']:.4f}, "
                f"warping error {metrics['warping_error']:.6f}",
                file=sys.stderr,
            )


def take_run_lock():
    """One run per folder (unetseg.runlock): a second run stops here, before any job starts."""
    try:
        note = runlock.acquire()
    except UnetsegError as error:
        print(f"unetseg: {error}", file=sys.stderr)
        os._exit(1)  # at once, and without the onerror hook, which would free the other's lock
    if note:
        print(f"unetseg: {note}", file=sys.stderr)


onstart:
    take_run_lock()


onsuccess:
    runlock.release()
    print_metrics_summary()


onerror:
    runlock.release()


def stage_code(*modules):
    """A stage's own modules as inputs: editing one reruns that stage and what follows it.

    Snakemake's `code` rerun trigger sees only the rule's shell line, not the package it calls.
    """
    return [str(Path(workflow.basedir) / "workflow/unetseg" / f"{module}.py") for module in modules]
