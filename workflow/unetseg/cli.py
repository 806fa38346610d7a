"""One command-line entry point, `unetseg <stage> ...`; heavy imports happen inside each stage."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path

from unetseg.errors import UnetsegError, out_of_memory
from unetseg.stores import BLOSC_COMPRESSORS, PROBABILITY_CODEC, is_zarr

log = logging.getLogger("unetseg")


def triple(text: str, cast=int) -> tuple:
    values = tuple(cast(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated values, got '{text}'")
    return values


def label_argument(text: str) -> str:
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"expected NAME=STORE, got '{text}'")
    return text


def layout(text: str) -> bool | str:
    """--channels-last's value: true, false or auto."""
    if text not in ("true", "false", "auto"):
        raise argparse.ArgumentTypeError(f"expected true, false or auto, got '{text}'")
    return text if text == "auto" else text == "true"


def settings(text: str) -> dict:
    """JSON text, or a path to a JSON/YAML file."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    import yaml

    return yaml.safe_load(Path(text).read_text())


def cmd_demo_data(args) -> None:
    import tifffile

    from unetseg import io
    from unetseg.data import demo_volume

    raw, labels = demo_volume(tuple(args.shape), args.seed, noise_std=args.noise)
    for array, path in ((raw, args.raw), (labels, args.labels)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with io.atomic_output(path) as tmp:
            tifffile.imwrite(tmp, array, imagej=True, metadata={"axes": "ZYX"})
    log.info("demo volume %s written to %s and %s", raw.shape, args.raw, args.labels)


def cmd_dsb2018(args) -> None:
    from unetseg.datasets import write_dsb2018

    write_dsb2018(args.stage1_train, args.out)


def cmd_chunk(args) -> None:
    from unetseg.chunk import chunk_volume

    chunk_volume(
        args.tiff,
        args.out,
        chunks=args.chunks,
        slices=tuple(args.slices) if args.slices else None,
        voxel_size=args.voxel_size,
        is_labels=args.labels,
        match_shape_of=args.match,
        compression={"cname": args.cname, "clevel": args.clevel},
        workers=args.threads,
        shards=args.shards,
        levels=args.levels,
        label_kind=args.label_kind,
        channel=args.channel,
        match_channel=args.match_channel,
        ignore_label=args.ignore_label,
    )


def cmd_export_model(args) -> None:
    from unetseg.modelzoo import export_model

    export_model(args.model, args.out, args.sample, name=args.name, authors=tuple(args.author),
                 license_id=args.license, voxel_size=args.voxel_size)  # fmt: skip


def cmd_view(args) -> None:
    from unetseg.views import write_view

    labels = dict(label.split("=", 1) for label in args.label)
    write_view(args.raw, args.out, labels)


def cmd_export(args) -> None:
    from unetseg.export import export_tiff

    export_tiff(args.zarr, args.tiff)


def cmd_weights(args) -> None:
    from unetseg.weights import compute_weights

    compute_weights(args.labels, args.out, args.w0, args.sigma_px, args.threads)


def cmd_train(args) -> None:
    import torch

    from unetseg import labels, samples, train

    torch.set_num_threads(args.threads)
    options = settings(args.settings)
    options["workers"] = samples.loader_workers(options.get("workers", 1), args.threads)
    augment = train.AugmentConfig(**options.pop("augment", {}))
    try:
        config = train.TrainConfig(**options, augment=augment)
    except TypeError as error:
        raise UnetsegError(f"train settings: {error}") from error
    if len(args.raw) != len(args.labels) or len(args.raw) != len(args.weights):
        raise UnetsegError("train: give one --labels and one --weights per --raw")
    if len(args.val_raw) != len(args.val_labels):
        raise UnetsegError("train: give one --val-labels per --val-raw")
    for path in args.val_labels:
        labels.require_dense(path)  # the validation errors score every pixel
    volumes = [
        samples.load_volume(*paths, config=config)
        for paths in zip(args.raw, args.labels, args.weights, strict=True)
    ]
    val_volumes = [
        samples.load_volume(*paths, config=config)
        for paths in zip(args.val_raw, args.val_labels, strict=True)
    ]
    Path(args.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    train.train(
        volumes,
        val_volumes,
        config,
        args.model,
        args.log,
        args.checkpoint,
        validation_path=args.validation_summary,
    )


def cmd_predict(args) -> None:
    from unetseg.predict import predict_volume

    predict_volume(
        args.model,
        args.raw,
        args.out,
        tile_out=args.tile_out,
        batch_size=args.batch_size,
        block_px=args.block_px,
        scheduler=args.scheduler,
        workers=args.workers,
        threads=args.threads,
        precision=args.precision,
        channels_last=args.channels_last,
        device=args.device,
        out_dtype=args.dtype,
        compression={"cname": args.cname, "clevel": args.clevel},
        expect_architecture=settings(args.expect_architecture)
        if args.expect_architecture
        else None,
        tta=args.tta,
        scheduler_address=args.scheduler_address,
    )


def cmd_segment(args) -> None:
    from unetseg.segment import best_threshold, segment_volume

    tuned = json.loads(Path(args.tuned).read_text()) if args.tuned else {}
    if args.threshold == "auto":
        threshold = best_threshold(args.metrics)
    elif args.threshold == "auto_ap50":
        threshold = tuned_value(tuned, "threshold")
    else:
        threshold = number(args.threshold, "segment.threshold", "'auto' or 'auto_ap50'")
    split_h = args.split_h
    if split_h == "auto":
        split_h = tuned_value(tuned, "split_h")
    elif split_h is not None:
        split_h = number(split_h, "segment.split_h", "'auto'")
    segment_volume(
        args.probability,
        args.out,
        threshold,
        args.watershed_seed,
        args.min_size_px,
        args.threads,
        split_h,
    )


def number(text: str, key: str, words: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UnetsegError(f"{key}: '{text}' is not a number or {words}") from None


def tuned_value(tuned: dict, key: str):
    if key not in tuned:
        raise UnetsegError(f"segment.{key}: 'auto' needs --tuned, tune-segment's output")
    return tuned[key]


def cmd_tune_segment(args) -> None:
    from unetseg import io
    from unetseg.tuning import tune_segmentation

    if len(args.probability) != len(args.labels):
        raise UnetsegError("tune-segment: give one --labels per --probability")
    split_h = None if args.split_h == "none" else args.split_h
    if split_h not in ("auto", None):
        split_h = number(split_h, "segment.split_h", "'auto' or 'none'")
    tuned = tune_segmentation(args.probability, args.labels, split_h, args.watershed_seed,
                              args.min_size_px)  # fmt: skip
    io.write_json(args.out, tuned)


def cmd_evaluate_instances(args) -> None:
    from unetseg import evaluate, io, labels

    labels.require_dense(args.truth)
    truth, segmentation = io.open_slices(args.truth), io.open_slices(args.segmentation)
    kind = io.zarr_attrs(args.truth).get("label_kind") if is_zarr(args.truth) else None
    metrics = evaluate.instance_metrics(truth, segmentation, kind, (args.truth, args.segmentation))
    print(json.dumps({key: metrics[key] for key in ("ap50", "mean_ap")}))
    io.write_json(args.out, metrics)


def cmd_summarize(args) -> None:
    from unetseg import report

    if not len(args.names) == len(args.roles) == len(args.metrics) == len(args.instances):
        raise UnetsegError(
            "summarize: give one --roles, --metrics and --instances entry per --names entry"
        )
    report.write_summary(args.names, args.roles, args.metrics, args.instances, args.out)


def cmd_evaluate(args) -> None:
    from unetseg import evaluate, io, labels

    labels.require_dense(args.truth)
    truth, prediction = io.open_slices(args.truth), io.open_slices(args.prediction)
    names = (args.truth, args.prediction)
    metrics = evaluate.evaluate_arrays(truth, prediction, workers=args.threads, names=names)
    summary = evaluate.headline(metrics)
    print(json.dumps(summary))
    if args.out:
        io.write_json(args.out, metrics)
    if args.per_slice:
        keys = evaluate.HEADLINE_KEYS
        lines = ["\t".join(("slice", *keys))]
        lines += ["\t".join(str(row[k]) for k in ("slice", *keys)) for row in metrics["per_slice"]]
        with io.atomic_output(args.per_slice) as tmp:
            tmp.write_text("\n".join(lines) + "\n")


def cmd_install_profile(args) -> None:
    import os
    import shutil

    source = Path(__file__).resolve().parents[2] / "profiles" / args.name
    if not (source / "config.yaml").exists():
        raise UnetsegError(f"install-profile: no profile '{args.name}' in {source.parent}")
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    target = config_home / "snakemake" / args.name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "config.yaml", target / "config.yaml")
    log.info("installed profile %s: use it as `snakemake --profile %s`", target, args.name)


def cmd_report(args) -> None:
    from unetseg import report

    if args.figure == "data":
        report.data_figure(args.raw, args.labels, args.weights, args.out)
    elif args.figure == "augmentation":
        report.augmentation_figure(
            args.raw, args.labels, args.weights, settings(args.settings), args.out
        )
    elif args.figure == "run":
        report.run_summary(args.benchmarks, settings(args.settings), args.html, args.out)
    elif args.figure == "training":
        report.training_figure(args.log, args.out)
    elif args.figure == "prediction":
        report.prediction_figure(
            args.raw, args.labels, args.probability, args.segmentation, args.metrics, args.out
        )
    elif args.figure == "instances":
        report.instances_figure(args.raw, args.labels, args.segmentation, args.instances, args.out)
    elif args.figure == "volume":
        report.volume_figure(args.raw, args.probability, args.segmentation, args.out, args.volume)
    else:
        report.metrics_figure(args.metrics, args.out, args.volume)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has one (not for flags, nor options unset by default)."""

    def _get_help_string(self, action) -> str:
        if action.default is None or action.default is False or action.default == []:
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetseg", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, function, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help_text, description=help_text,
            formatter_class=DefaultsHelpFormatter,
        )  # fmt: skip
        sub.set_defaults(function=function)
        return sub

    sub = command(
        "dsb2018",
        cmd_dsb2018,
        "raw.tif and labels.tif of the 30 DSB 2018 images config/dsb2018.yaml reads.",
    )
    sub.add_argument("stage1_train", help="the BBBC038 stage1_train folder (<id>/images, masks)")
    sub.add_argument("--out", default="data/dsb2018", help="output folder")

    sub = command("demo-data", cmd_demo_data, "Make the synthetic EM-like demo volume and labels.")
    sub.add_argument("--raw", required=True, help="output TIFF of grey values (uint8)")
    sub.add_argument("--labels", required=True, help="output TIFF of labels (255 = cell interior)")
    sub.add_argument(
        "--shape", type=int, nargs=3, default=(8, 256, 256), metavar=("Z", "Y", "X"),
        help="volume shape in slices and pixels",
    )  # fmt: skip
    sub.add_argument("--seed", type=int, default=0, help="the same seed gives the same volume")
    sub.add_argument("--noise", type=float, default=0.08, help="Gaussian noise std (grey 0..1)")

    sub = command("chunk", cmd_chunk, "Stream a TIFF volume into a chunked OME-Zarr store.")
    sub.add_argument("tiff", help="multi-page TIFF or BigTIFF, or a folder of 2D TIFF slices")
    sub.add_argument("out", help="output .zarr store")
    sub.add_argument("--labels", action="store_true", help="the TIFF holds labels, not grey values")
    sub.add_argument("--match", help="raw TIFF whose shape the labels must have")
    sub.add_argument("--channel", type=int, help="the channel to take of a multichannel TIFF")
    sub.add_argument("--match-channel", type=int, help="the channel taken of the --match TIFF")
    sub.add_argument(
        "--label-kind",
        choices=["auto", "binary", "instance"],
        default="auto",
        help="labels: binary masks or instance ids (auto: detected from the values)",
    )
    sub.add_argument(
        "--ignore-label",
        type=int,
        help="labels: the value of unannotated pixels (sparse annotation), left out of the loss",
    )
    sub.add_argument("--chunks", type=triple, default=(1, 512, 512), help="z,y,x chunk shape")
    sub.add_argument("--slices", type=int, nargs=2, metavar=("START", "STOP"),
                     help="take slices START to STOP - 1 only")  # fmt: skip
    sub.add_argument("--voxel-size", type=lambda t: triple(t, float), help="z,y,x in micrometres")
    sub.add_argument("--shards", type=triple, help="z,y,x shard shape (Zarr v3 sharding)")
    sub.add_argument("--levels", type=int, default=1, help="pyramid levels (1: none)")
    sub.add_argument("--cname", default="zstd", choices=BLOSC_COMPRESSORS,
                     help="Blosc compressor")  # fmt: skip
    sub.add_argument("--clevel", type=int, default=1, help="Blosc compression level")
    sub.add_argument("--threads", type=int, default=2, help="worker threads")

    sub = command("export", cmd_export, "Stream a Zarr volume into a TIFF (ImageJ metadata).")
    sub.add_argument("zarr", help="input .zarr store (its full-resolution array)")
    sub.add_argument("tiff", help="output TIFF (BigTIFF when large)")

    sub = command(
        "export-model",
        cmd_export_model,
        "A trained model as a bioimage.io model package (OUT/ and OUT.zip) for deepImageJ, "
        "ilastik and napari.",
    )
    sub.add_argument("model", help="model.pt from unetseg train")
    sub.add_argument("out", help="package folder to write (and OUT.zip beside it)")
    sub.add_argument("--sample", required=True,
                     help="a .zarr store or TIFF whose first slice gives the test tile")  # fmt: skip
    sub.add_argument("--name", default="U-Net (unetseg)", help="the model's name")
    sub.add_argument("--author", action="append", default=[], help="an author (repeatable)")
    sub.add_argument("--license", default="MIT", help="SPDX licence of the weights")
    sub.add_argument("--voxel-size", type=lambda t: triple(t, float),
                     help="z,y,x in µm (default: the sample's)")  # fmt: skip

    sub = command(
        "view",
        cmd_view,
        "One OME-Zarr store of an image with its label images (links, no copies), for napari.",
    )
    sub.add_argument("raw", help="the image's OME-Zarr store")
    sub.add_argument("out", help="the view store to write")
    sub.add_argument("--label", action="append", default=[], type=label_argument,
                     help="NAME=STORE: a label image (repeatable)")  # fmt: skip

    sub = command("weights", cmd_weights, "Weight maps of the paper (Eq. 2) from a label store.")
    sub.add_argument("labels", help="label .zarr store")
    sub.add_argument("out", help="output .zarr store")
    sub.add_argument("--w0", type=float, default=10.0, help="border weight (paper: 10)")
    sub.add_argument("--sigma-px", type=float, default=5.0, help="border width (paper: ~5 px)")
    sub.add_argument("--threads", type=int, default=1, help="worker threads")

    sub = command("train", cmd_train, "Train the U-Net; resumes from --checkpoint if present.")
    sub.add_argument("--raw", nargs="+", required=True, help="training raw .zarr stores")
    sub.add_argument("--labels", nargs="+", required=True, help="their label stores")
    sub.add_argument("--weights", nargs="+", required=True, help="their weight-map stores")
    sub.add_argument("--val-raw", nargs="*", default=[], help="validation raw stores")
    sub.add_argument("--val-labels", nargs="*", default=[], help="validation label stores")
    sub.add_argument("--settings", default="{}", help="training settings: JSON text or file")
    sub.add_argument("--model", required=True, help="output model file (best validation)")
    sub.add_argument("--log", required=True, help="output training log (TSV)")
    sub.add_argument("--checkpoint", required=True, help="checkpoint file to resume from")
    sub.add_argument(
        "--validation-summary",
        help="output JSON: the kept validation beside each slice scored by the network the "
        "other slices chose",
    )
    sub.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    sub = command("predict", cmd_predict, "Overlap-tile prediction of a raw store, with Dask.")
    sub.add_argument("model", help="model file (model.pt) written by train")
    sub.add_argument("raw", help="raw .zarr store")
    sub.add_argument("out", help="output probability .zarr store")
    sub.add_argument("--tile-out", type=int, default=388, help="output tile size (paper: 388)")
    sub.add_argument("--batch-size", type=int, default=1, help="tiles per forward pass")
    sub.add_argument("--block-px", type=int, default=768,
                     help="y/x size of an output chunk (best a multiple of the tile stride)")  # fmt: skip
    sub.add_argument(
        "--scheduler", default="threads",
        choices=("threads", "processes", "sync", "distributed", "slurm"),
        help="Dask scheduler; distributed: a LocalCluster, or the one at --scheduler-address; "
        "slurm: dask-jobqueue SLURMCluster, one job per worker",
    )  # fmt: skip
    sub.add_argument("--scheduler-address", help="tcp://host:port of a running Dask scheduler")
    sub.add_argument("--tta", action="store_true", help="average over the 8 flips/rotations")
    sub.add_argument("--workers", type=int, default=1, help="Dask workers")
    sub.add_argument("--threads", type=int, default=1, help="CPU threads in all")
    sub.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "auto"),
                     help="autocast type; fp16 on CUDA only; auto: bf16 where native, else fp32")  # fmt: skip
    sub.add_argument("--cname", default=PROBABILITY_CODEC["cname"], choices=BLOSC_COMPRESSORS,
                     help="Blosc compressor of the probability store")  # fmt: skip
    sub.add_argument("--clevel", type=int, default=PROBABILITY_CODEC["clevel"],
                     help="its Blosc compression level")  # fmt: skip
    sub.add_argument("--channels-last", nargs="?", const=True, default=False, type=layout,
                     help="channels_last memory layout: true (alone too), false or auto")  # fmt: skip
    sub.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    sub.add_argument(
        "--dtype", default="float16", choices=("float16", "float32", "uint8"),
        help="uint8: stored as round(255 p), read back as float32 (error <= 1/510)",
    )  # fmt: skip
    sub.add_argument("--expect-architecture", help='JSON, e.g. {"depth": 4, "base_channels": 64}')

    sub = command(
        "segment", cmd_segment, "Threshold + 4-connected components, or a seeded watershed."
    )
    sub.add_argument("probability", help="probability .zarr store")
    sub.add_argument("out", help="output segmentation .zarr store (uint32 ids)")
    sub.add_argument(
        "--threshold", default="0.5", help="a number in [0, 1], 'auto' (Rand) or 'auto_ap50'"
    )
    sub.add_argument("--metrics", nargs="*", default=[], help="validation metrics (for 'auto')")
    sub.add_argument("--tuned", help="tune-segment's JSON (for 'auto_ap50', split-h 'auto')")
    sub.add_argument(
        "--watershed-seed", type=float, help="seeds of a watershed within the cells: above this"
    )
    sub.add_argument(
        "--split-h", help="split cells at the peaks of their distance map this high (px), 'auto'"
    )
    sub.add_argument("--min-size-px", type=int, default=0, help="drop cells smaller than this")
    sub.add_argument("--threads", type=int, default=1, help="slices labelled at once")

    sub = command(
        "tune-segment",
        cmd_tune_segment,
        "The threshold (and split-h) of the best instance AP50 on validate volumes.",
    )
    sub.add_argument("--probability", nargs="+", required=True, help="validate probabilities")
    sub.add_argument("--labels", nargs="+", required=True, help="their labels stores")
    sub.add_argument("--out", required=True, help="output JSON (segment's --tuned)")
    sub.add_argument("--split-h", default="auto", help="a number, 'auto' (tried), or none")
    sub.add_argument("--watershed-seed", type=float, help="as segment's")
    sub.add_argument("--min-size-px", type=int, default=0, help="as segment's")

    sub = command("evaluate", cmd_evaluate, "ISBI 2012 pixel, Rand and warping errors.")
    sub.add_argument("--truth", required=True, help="labels (TIFF or Zarr), non-zero = cell")
    sub.add_argument("--prediction", required=True, help="P(cell interior) in [0, 1] (TIFF/Zarr)")
    sub.add_argument("--out", help="metrics JSON")
    sub.add_argument("--per-slice", help="per-slice metrics TSV")
    sub.add_argument("--threads", type=int, default=1, help="slices scored at once")

    sub = command("evaluate-instances", cmd_evaluate_instances, "Instance AP over IoU 0.5:0.95.")
    sub.add_argument("--truth", required=True, help="labels: binary (cells = components) or ids")
    sub.add_argument("--segmentation", required=True, help="predicted instance ids")
    sub.add_argument("--out", required=True, help="instance metrics JSON")

    sub = command("summarize", cmd_summarize, "Per-volume metrics table beside the paper.")
    sub.add_argument("--names", nargs="+", required=True, help="volume names")
    sub.add_argument("--roles", nargs="+", required=True, help="their roles (validate, test)")
    sub.add_argument("--metrics", nargs="+", required=True, help="their metrics JSON files")
    sub.add_argument("--instances", nargs="+", required=True, help="their instance metrics")
    sub.add_argument("--out", required=True, help="summary TSV")

    sub = command(
        "install-profile",
        cmd_install_profile,
        "Install a profile of profiles/ as your Snakemake profile, so `--profile NAME` finds it.",
    )
    sub.add_argument("name", nargs="?", default="slurm", help="profile name (default: slurm)")

    sub = command("report", cmd_report, "QC figures for the report.")
    sub.add_argument(
        "figure",
        choices=(
            "data",
            "augmentation",
            "training",
            "prediction",
            "instances",
            "volume",
            "metrics",
            "run",
        ),  # fmt: skip
        help="which figure to draw",
    )
    sub.add_argument("--out", required=True, help="output PNG")
    for name in ("raw", "labels", "weights", "log", "probability", "segmentation", "metrics",
                 "instances"):  # fmt: skip
        sub.add_argument(f"--{name}", help=f"{name} store or file")
    sub.add_argument("--settings", default="{}", help="JSON: training settings / run config")
    sub.add_argument("--benchmarks", help="folder of the rules' benchmark files (run)")
    sub.add_argument("--html", help="output HTML page (run)")
    sub.add_argument("--volume", default="", help="volume name for titles")
    return parser


def damaged_input(args) -> str | None:
    """Which input store holds a damaged chunk, and which chunk: the stores the command was
    given are checked one by one (only after a read failed)."""
    from unetseg import io

    given = [
        v for value in vars(args).values() for v in (value if isinstance(value, list) else [value])
    ]
    for path in (v for v in given if isinstance(v, str) and is_zarr(v)):
        damaged = io.damaged_chunks(path)
        if damaged:
            return (f"{path}: chunk {', '.join(damaged[:5])} is damaged (its crc32c checksum does "
                    "not match); rerun the step that wrote this store")  # fmt: skip
    return None


def memory_advice(args) -> str:
    """What to lower when a command ran out of memory, as the config keys that set it."""
    if args.command == "predict":
        return (f"lower predict.batch_size ({args.batch_size}) or predict.tile_out "
                f"({args.tile_out}), or predict.workers ({args.workers}): each worker holds a "
                "batch on the device")  # fmt: skip
    if args.command == "train":
        from unetseg.train import TrainConfig

        options = settings(args.settings)
        batch_size = options.get("batch_size", TrainConfig.batch_size)
        tile_out = options.get("tile_out", TrainConfig.tile_out)
        return f"lower train.batch_size ({batch_size}) or train.tile_out ({tile_out})"
    return "give the job more memory (the rule's mem_mb)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if "SLURM_JOB_ID" in os.environ:
        # First, so that the log of a job killed early (memory, time) is not empty: Snakemake
        # then shows the job's SLURM log (the kill's reason) after it, and sacct/seff find it.
        log.info("SLURM job %s on %s", os.environ["SLURM_JOB_ID"], socket.gethostname())
    try:
        args.function(args)
    except UnetsegError as error:
        print(f"unetseg {args.command}: error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        if "checksum" not in str(error).lower():  # zarr's read of a damaged chunk
            raise
        print(f"unetseg {args.command}: error: {damaged_input(args) or error}", file=sys.stderr)
        return 1
    except (RuntimeError, MemoryError) as error:
        ran_out = out_of_memory(error)
        if ran_out is None:
            raise
        print(f"unetseg {args.command}: error: {ran_out}; {memory_advice(args)}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk outside the outputs' own writes (scratch, logs)
        from unetseg.io import DISK_FULL

        if error.errno not in DISK_FULL:
            raise
        print(f"unetseg {args.command}: error: {error.filename or 'a file'}: no space left on the "
              f"device ({error.strerror}); free some space and rerun", file=sys.stderr)  # fmt: skip
        return 1
    return 0
