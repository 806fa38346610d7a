"""The bioimage.io model package: bioimage.io's own model test passes on it (offline), its
tensors are what unetseg's prediction gives, and the shipped model's package matches it."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from unetseg import intensity, io, modelzoo
from unetseg.cli import main
from unetseg.predict import forward_tiles
from unetseg.unet import UNet

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "isbi2012-cpu-16ch"


def bioimageio_test(rdf: Path) -> str:
    from bioimageio.core import test_model

    summary = test_model(rdf)
    failures = [d.name for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failures
    return summary.status


def tiny_checkpoint(path: Path, normalize: str, norm: str = "none") -> UNet:
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4, norm=norm).eval()
    torch.save(
        {
            "model_config": model.config,
            "model_state": model.state_dict(),
            "train_config": {"normalize": normalize, "normalize_percentiles": [1.0, 99.8]},
            "step": 20,
            "metrics": {"pixel_error": 0.25, "rand_error": 0.5},
        },
        path,
    )
    return model


def sample_store(path: Path, dtype=np.uint16) -> Path:
    volume = np.random.default_rng(0).integers(100, 4000, (2, 150, 130)).astype(dtype)
    store = io.create_ome_zarr(path, volume.shape, dtype, (1, 64, 64), (1.0, 0.25, 0.2))
    store[...] = volume
    return path


@pytest.mark.parametrize(("normalize", "norm"), [("percentile", "group"), ("unit", "none")])
def test_package_passes_bioimageio_model_test(tmp_path, normalize, norm):
    model = tiny_checkpoint(tmp_path / "model.pt", normalize, norm)
    sample = sample_store(tmp_path / "raw.zarr")
    assert main(["export-model", str(tmp_path / "model.pt"), str(tmp_path / "pkg" / "m"),
                 "--sample", str(sample), "--author", "A. Person"]) == 0  # fmt: skip
    package = tmp_path / "pkg" / "m"
    bioimageio_test(package / "rdf.yaml")
    rdf = yaml.safe_load((package / "rdf.yaml").read_text())
    assert rdf["format_version"] == modelzoo.FORMAT_VERSION
    assert rdf["authors"] == [{"name": "A. Person"}]
    # valid convolutions: 20 px of context a side for 2 poolings, inputs 4k + 44 (44 -> 4)
    y_in, y_out = rdf["inputs"][0]["axes"][2], rdf["outputs"][0]["axes"][2]
    assert y_in["size"] == {"min": 44, "step": 4} and y_in["scale"] == 0.25
    assert y_out["size"] == {"tensor_id": "raw", "axis_id": "y", "offset": -40}
    steps = [step["id"] for step in rdf["inputs"][0]["preprocessing"]]
    assert steps == ["ensure_dtype", "scale_range" if normalize == "percentile" else "scale_linear"]
    # the test tile: the first slice's centre, as large as its 130 px width holds (128 -> 88)
    tile = np.load(package / "test_input.npy")[0, 0]
    assert tile.dtype == np.uint16
    assert np.array_equal(tile, np.asarray(io.open_zarr(sample)[0])[11:139, 1:129])
    # the package's output is unetseg's prediction of that tile under the same grey mapping
    if normalize == "unit":
        mapping = intensity.unit_mapping(np.uint16)
    else:
        low, high = np.percentile(tile.astype(np.float32), [1.0, 99.8])
        mapping = (float(low), float(high - low + 1e-6))
    ours = forward_tiles(model, tile[np.newaxis], torch.device("cpu"), "fp32", False,
                         grey_mapping=mapping)  # fmt: skip
    packaged = np.load(package / "test_output.npy")
    assert packaged.shape == (1, 2, 88, 88)
    np.testing.assert_allclose(packaged[0, 1], ours[0], atol=1e-5)
    assert (tmp_path / "pkg" / "m.zip").stat().st_size > 0
    assert tifffile.imread(package / "sample_output.tif").shape == (88, 88)
    assert "## Validation" in (package / "README.md").read_text()


def test_validation_names_the_figures_a_reader_knows_only():
    checkpoint = {"step": 10750, "metrics": {"pixel_error": 0.05091, "rand_error": 0.10662,
                                             "wrong_fraction": 0.081, "ap50": 0.8125}}  # fmt: skip
    assert modelzoo.validation(checkpoint).startswith(
        "The kept model (step 10750) scored pixel error 0.0509, Rand error 0.1066, "
        "instance AP at IoU 0.5 0.8125 on the validation images"
    )
    assert modelzoo.validation({"step": 5, "metrics": {}}).startswith("Trained without validation")
    checkpoint["choice"] = {"validations": 56, "leave_one_slice_out": {
        "steps": [10750, 10750, 9250, 10750], "pixel_error": 0.05139, "rand_error": 0.11603}}  # fmt: skip
    assert modelzoo.validation(checkpoint).endswith(
        "lower is better). The same images chose it among 56 validated networks, which flatters "
        "these figures; each image scored by the network the other images chose gives pixel "
        "error 0.0514, Rand error 0.1160."
    )


def test_test_tile_is_the_slice_centre_or_mirrored_up_to_the_smallest_input(tmp_path):
    plane = np.arange(30 * 40, dtype=np.uint16).reshape(30, 40)
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, plane)
    tile = modelzoo.test_tile(small, depth=2)  # the smallest valid input, 44, mirrored around
    expected = np.pad(plane, ((7, 7), (2, 2)), mode="reflect")
    assert np.array_equal(tile, expected)
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.zeros((600, 700), np.uint8))
    assert modelzoo.test_tile(big, depth=2).shape == (428, 428)  # the paper's 388-px output


def test_export_of_a_file_that_is_not_a_model_is_one_line(tmp_path, capsys):
    (tmp_path / "model.pt").write_text("not a model")
    sample = sample_store(tmp_path / "raw.zarr")
    assert main(["export-model", str(tmp_path / "model.pt"), str(tmp_path / "out"),
                 "--sample", str(sample)]) == 1  # fmt: skip
    assert "model.pt: not a usable unetseg model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.zip").exists()
    tiny_checkpoint(tmp_path / "model.pt", "unit")
    assert main(["export-model", str(tmp_path / "model.pt"), str(tmp_path / "out"),
                 "--sample", str(sample), "--name", "U-Net, EM"]) == 1  # fmt: skip
    assert "export_model.name: 'U-Net, EM' must be" in capsys.readouterr().err


def test_shipped_model_package_is_the_shipped_model_and_passes(tmp_path):
    package = SHIPPED / "bioimageio"
    weights = torch.load(package / "weights.pt", weights_only=True)
    shipped = torch.load(SHIPPED / "model.pt", weights_only=True)["model_state"]
    assert weights.keys() == shipped.keys()
    assert all(torch.equal(weights[key], shipped[key]) for key in shipped)
    assert (package / "unet.py").read_text() == (REPO / "workflow/unetseg/unet.py").read_text()
    bioimageio_test(package / "rdf.yaml")
