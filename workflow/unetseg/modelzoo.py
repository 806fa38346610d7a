"""A trained model as a BioImage Model Zoo package (bioimage.io model format 0.5), which Fiji's
deepImageJ, ilastik, napari (bioimageio plugin) and QuPath open without this package.

The package holds: rdf.yaml; the state dict with the network's own source (unet.py imports
only torch) and TorchScript weights; a test input tile from real data and the output this model
gives for it; a cover image; a README. Grey values are normalised as the model was trained
(`unit`: divided by the type's maximum; `percentile`: each image's 1st and 99.8th percentiles to
0 and 1) and the output is the softmax over the two classes (background, cell). The network's
convolutions are valid: each output is `2 * context` pixels smaller than its input (184 for
the paper's 4 poolings), and inputs are `min + k * 2**depth` pixels.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import string
import warnings
import zipfile
from pathlib import Path

import numpy as np
import tifffile
import torch
import yaml

from unetseg import intensity, io, tiling, unet
from unetseg.errors import UnetsegError
from unetseg.predict import load_model
from unetseg.stores import is_zarr

log = logging.getLogger(__name__)

FORMAT_VERSION = "0.5.12"  # the bioimage.io model format (bioimageio.spec 0.5.12)
PAPER = {
    "text": "Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image "
    "Segmentation. MICCAI 2015.",
    "doi": "10.1007/978-3-319-24574-4_28",
}
REPOSITORY = "https://github.com/unetseg/unetseg"
NAME_CHARACTERS = set(string.ascii_letters + string.digits + "_+- ()")  # the format's rule
TEST_TILE_OUT = 388  # the paper's tile, or the largest valid one the sample's slice holds


def export_model(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    sample: str | os.PathLike,
    name: str = "U-Net (unetseg)",
    authors: tuple[str, ...] = (),
    license_id: str = "MIT",
    voxel_size: tuple[float, float, float] | None = None,
) -> Path:
    """Write the package folder `out_dir` and `out_dir`.zip beside it (what deepImageJ installs);
    the test tile is the centre of `sample`'s first slice (a Zarr store or a TIFF), whose voxel
    size (µm) the package states unless `voxel_size` is given. Returns the zip's path."""
    check_name(name)
    model, checkpoint = load_model(model_path)
    config = checkpoint["model_config"]
    preprocessing = grey_value_steps(checkpoint, sample)
    tile = test_tile(sample, config["depth"])
    output = model_output(model, tile, preprocessing)
    out_dir, archive = Path(out_dir), Path(f"{out_dir}.zip")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with io.atomic_output(out_dir) as tmp:
        tmp.mkdir()
        np.save(tmp / "test_input.npy", tile[np.newaxis, np.newaxis])
        np.save(tmp / "test_output.npy", output)
        tifffile.imwrite(tmp / "sample_input.tif", tile)  # what viewers show, as the tensors
        tifffile.imwrite(tmp / "sample_output.tif", output[0, 1])
        torch.save(model.state_dict(), tmp / "weights.pt")
        torchscript(model).save(str(tmp / "weights.torchscript"))
        shutil.copyfile(unet.__file__, tmp / "unet.py")
        write_cover(tmp / "cover.png", tile, output, tiling.context_px(config["depth"]))
        voxel = voxel_size or sample_voxel_size(sample)
        rdf = description(checkpoint, name, authors, license_id, preprocessing, voxel)
        (tmp / "README.md").write_text(documentation(checkpoint, name, preprocessing))
        add_checksums(rdf, tmp)
        (tmp / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    with io.atomic_output(archive) as tmp_zip, zipfile.ZipFile(tmp_zip, "w") as bundle:
        for path in sorted(out_dir.iterdir()):
            bundle.write(path, path.name, compress_type=zipfile.ZIP_DEFLATED)
    log.info("bioimage.io model package of %s written to %s and %s", model_path, out_dir, archive)
    return archive


def check_name(name: str) -> None:
    if not 5 <= len(name) <= 128 or set(name) - NAME_CHARACTERS:
        raise UnetsegError(
            f"export_model.name: '{name}' must be 5-128 characters of letters, digits, spaces "
            "and _+-() (the bioimage.io format's rule)"
        )


def torchscript(model: unet.UNet) -> torch.jit.ScriptModule:
    """TorchScript, deprecated in torch but the format deepImageJ and bioimage.io read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        return torch.jit.script(model)


def grey_value_steps(checkpoint: dict, sample) -> list[dict]:
    """The bioimage.io preprocessing that reproduces the model's grey-value normalisation (for
    `unit`, the sample's type sets the divisor). A model trained with one percentile mapping per
    volume gets each image's own percentiles: a 2D package sees one image at a time."""
    settings = checkpoint.get("train_config", {})
    method = settings.get("normalize", "unit")
    dtype = sample_dtype(sample)
    steps = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if method == "unit":
        _, scale = intensity.unit_mapping(dtype)
        steps.append({"id": "scale_linear", "kwargs": {"gain": 1.0 / scale, "offset": 0.0}})
    else:
        low, high = settings.get("normalize_percentiles", intensity.DEFAULT_PERCENTILES)
        steps.append(
            {
                "id": "scale_range",
                "kwargs": {
                    "axes": ["y", "x"],
                    "min_percentile": float(low),
                    "max_percentile": float(high),
                },  # fmt: skip
            }
        )
    return steps


def sample_dtype(sample) -> np.dtype:
    if is_zarr(sample):
        return io.open_zarr(sample).dtype
    with tifffile.TiffFile(sample) as tif:
        return tif.pages[0].dtype


def sample_voxel_size(sample) -> tuple[float, float, float]:
    if is_zarr(sample):
        return io.voxel_size(sample)
    from unetseg.chunk import tiff_voxel_size

    with tifffile.TiffFile(sample) as tif:
        return tiff_voxel_size(tif) or (1.0, 1.0, 1.0)


def test_tile(sample, depth: int) -> np.ndarray:
    """The centre of the sample's first slice, the paper's tile size or the largest valid one
    that fits (mirrored, as prediction does, where the slice is smaller than the smallest)."""
    if is_zarr(sample):
        plane = np.asarray(io.open_zarr(sample)[0])
    else:
        plane = tifffile.imread(sample, key=0)
    if plane.ndim != 2:
        raise UnetsegError(
            f"{sample}: the test tile needs a single-channel image, got {plane.shape}"
        )
    context, smallest = tiling.context_px(depth), tiling.smallest_valid_output(depth)
    target = max(min(TEST_TILE_OUT, min(plane.shape) - 2 * context), smallest)
    size = tiling.input_size(nearest_valid_outputs_below(target, depth), depth)
    pad = [(max(0, size - n + 1) // 2,) * 2 for n in plane.shape]
    plane = np.pad(plane, pad, mode="reflect") if any(p for p, _ in pad) else plane
    top, left = ((n - size) // 2 for n in plane.shape)
    return np.ascontiguousarray(plane[top : top + size, left : left + size])


def nearest_valid_outputs_below(size: int, depth: int) -> int:
    """The largest valid output size <= `size` (>= the smallest valid one)."""
    while size > tiling.smallest_valid_output(depth) and tiling.input_size(size, depth) is None:
        size -= 1
    return size


def model_output(model: unet.UNet, tile: np.ndarray, preprocessing: list[dict]) -> np.ndarray:
    """(1, 2, out, out) class probabilities of the tile after `preprocessing`, as bioimage.io
    computes them (float32, percentiles with its epsilon)."""
    values = tile.astype(np.float32)
    for step in preprocessing[1:]:
        kwargs = step["kwargs"]
        if step["id"] == "scale_linear":
            values = values * np.float32(kwargs["gain"]) + np.float32(kwargs["offset"])
        else:
            low, high = np.percentile(values, [kwargs["min_percentile"], kwargs["max_percentile"]])
            values = (values - np.float32(low)) / np.float32(high - low + 1e-6)
    with torch.inference_mode():
        logits = model(torch.from_numpy(values.astype(np.float32))[None, None])
        return torch.softmax(logits, dim=1).numpy()


def write_cover(path: Path, tile: np.ndarray, output: np.ndarray, context: int) -> None:
    """The input's centre (the output's field) beside the cell probability, 2:1 as the zoo
    recommends."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    field = tile[context : tile.shape[0] - context, context : tile.shape[1] - context]
    field = intensity.normalized(field, intensity.percentile_mapping(field, (1.0, 99.8)))
    side_by_side = np.concatenate([np.clip(field, 0, 1), output[0, 1]], axis=1)
    plt.imsave(path, side_by_side, cmap="gray", vmin=0, vmax=1)


def description(checkpoint, name, authors, license_id, preprocessing, voxel) -> dict:
    """rdf.yaml's content (format 0.5)."""
    config = checkpoint["model_config"]
    depth, context = config["depth"], tiling.context_px(config["depth"])
    smallest_input = tiling.input_size(tiling.smallest_valid_output(depth), depth)
    _, y_um, x_um = voxel
    space = [("y", y_um), ("x", x_um)]
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": (
            f"2D U-Net (Ronneberger et al. 2015), depth {depth}, {config['base_channels']} base "
            f"channels, valid convolutions: output = input - {2 * context} px; trained with "
            f"unetseg (the weights of step {checkpoint.get('step', '?')})."
        ),
        "authors": [{"name": author} for author in authors or ("unetseg user",)],
        "cite": [PAPER],
        "license": license_id,
        "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "tags": ["unet", "2d", "semantic-segmentation", "pytorch", "unetseg"],
        "git_repo": REPOSITORY,
        "inputs": [
            {
                "id": "raw",
                "description": "grey values as stored (one channel)",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["raw"]},
                    *(
                        {
                            "type": "space",
                            "id": axis,
                            "unit": "micrometer",
                            "scale": um,
                            "size": {"min": smallest_input, "step": tiling.grid_px(depth)},
                        }
                        for axis, um in space
                    ),
                ],  # fmt: skip
                "test_tensor": {"source": "test_input.npy"},
                "sample_tensor": {"source": "sample_input.tif"},
                "data": {"type": "float32"},  # after preprocessing: what the network takes
                "preprocessing": preprocessing,
            }
        ],
        "outputs": [
            {
                "id": "probability",
                "description": (
                    f"softmax of the two classes; the valid-convolution halo: each side "
                    f"{context} px inside the input's"
                ),
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["background", "cell"]},
                    *(
                        {
                            "type": "space",
                            "id": axis,
                            "unit": "micrometer",
                            "scale": um,
                            "size": {"tensor_id": "raw", "axis_id": axis, "offset": -2 * context},
                        }
                        for axis, um in space
                    ),
                ],  # fmt: skip
                "test_tensor": {"source": "test_output.npy"},
                "sample_tensor": {"source": "sample_output.tif"},
                "data": {"type": "float32", "range": [0.0, 1.0]},
                "postprocessing": [{"id": "softmax", "kwargs": {"axis": "channel"}}],
            }
        ],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pt",
                "architecture": {"source": "unet.py", "callable": "UNet", "kwargs": config},
                "pytorch_version": torch.__version__.split("+")[0],
            },
            "torchscript": {
                "source": "weights.torchscript",
                "pytorch_version": torch.__version__.split("+")[0],
                "parent": "pytorch_state_dict",
            },
        },
        "config": {
            "unetseg": {
                "train": {
                    key: checkpoint.get("train_config", {}).get(key)
                    for key in ("normalize", "normalize_percentiles", "tile_out", "steps")
                },
                "step": checkpoint.get("step"),
                "halo_px": context,
            }
        },  # fmt: skip
    }


def add_checksums(rdf: dict, folder: Path) -> None:
    """sha256 of each file the description names, as the format asks of packaged files."""
    files = [rdf["documentation"], *rdf["covers"]]
    for tensor in (*rdf["inputs"], *rdf["outputs"]):
        files += [tensor["test_tensor"], tensor["sample_tensor"]]
    for file in files:
        file["sha256"] = sha256(folder / file["source"])
    for weights in rdf["weights"].values():
        weights["sha256"] = sha256(folder / weights["source"])
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    architecture["sha256"] = sha256(folder / architecture["source"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def documentation(checkpoint: dict, name: str, preprocessing: list[dict]) -> str:
    config = checkpoint["model_config"]
    depth, context = config["depth"], tiling.context_px(config["depth"])
    smallest_input = tiling.input_size(tiling.smallest_valid_output(depth), depth)
    scaling = preprocessing[1]
    grey = (
        f"divided by {1 / scaling['kwargs']['gain']:g} (the data type's maximum)"
        if scaling["id"] == "scale_linear"
        else "each image's {min_percentile:g}th and {max_percentile:g}th percentiles mapped to 0 "
        "and 1".format(**scaling["kwargs"])
    )
    return f"""# {name}

A 2D U-Net (Ronneberger, Fischer & Brox 2015) trained with
[unetseg]({REPOSITORY}): depth {depth} ({depth} poolings), {config["base_channels"]} channels at
the top level, normalisation layers: {config.get("norm", "none")}.

## Input and output
- Input `raw`: one grey-value channel, {grey}.
- Output `probability`: background and cell probability (softmax), {2 * context} px smaller
  than the input: the convolutions are valid, so each output pixel saw {context} px of context
  on each side. Tiles must be `{smallest_input} + k * {2**depth}` px (572 -> 388 as in the
  paper); predict large images in overlapping tiles (the overlap-tile strategy), which
  deepImageJ, ilastik and bioimageio.core do from this description.
- Threshold the cell probability (unetseg's segment step picks the threshold on validation
  data) and label connected components for instances.

## Open it
- **Fiji / deepImageJ**: DeepImageJ Install Model, "From ZIP file", pick the `.zip`.
- **ilastik**: Neural Network Classification workflow, load the `.zip` (or `rdf.yaml`).
- **napari**: the `napari-bioimageio` plugin or `bioimageio.core`'s Python API.
- **Python**: `bioimageio test rdf.yaml` runs this package's own test.

## Validation
{validation(checkpoint)}
"""


# The validation figures a package's reader knows; training records others for itself (the
# rollback guard's share of wrong pixels).
VALIDATION_FIGURES = {"pixel_error": "pixel error", "rand_error": "Rand error",
                      "ap50": "instance AP at IoU 0.5"}  # fmt: skip


def validation(checkpoint: dict) -> str:
    """The kept model's validation errors as training recorded them (ISBI 2012 definitions)."""
    metrics = checkpoint.get("metrics") or {}
    if not metrics:
        return "Trained without validation data: no held-out errors recorded."
    text = (
        f"The kept model (step {checkpoint.get('step', '?')}) scored {named(metrics)} on the "
        "validation images, which it was not trained on (pixel and Rand errors as in the ISBI "
        "2012 challenge; lower is better)."
    )
    estimate = (checkpoint.get("choice") or {}).get("leave_one_slice_out")
    if not estimate:
        return text
    n = checkpoint["choice"]["validations"]
    return (
        f"{text} The same images chose it among {n} validated networks, which flatters these "
        f"figures; each image scored by the network the other images chose gives "
        f"{named(estimate)}."
    )


def named(figures: dict) -> str:
    """'pixel error p, Rand error r, ...': the VALIDATION_FIGURES that `figures` holds."""
    return ", ".join(f"{label} {figures[key]:.4f}" for key, label in VALIDATION_FIGURES.items()
                     if isinstance(figures.get(key), float))  # fmt: skip
