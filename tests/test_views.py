"""The per-volume view store: ome-zarr-py's reader finds the segmentation and the truth as label
images of the raw image, with their voxels, scales and colours; links survive a moved folder."""

import os
import shutil

import numpy as np
import pytest
from conftest import write_tiff

from unetseg import io
from unetseg.chunk import chunk_volume
from unetseg.cli import main
from unetseg.views import MAX_LISTED_COLOURS, write_view

VOXEL = (0.05, 0.004, 0.004)


def label_store(path, volume):
    store = io.create_ome_zarr(path, volume.shape, volume.dtype, (1, 32, 32), VOXEL)
    store[...] = volume
    return path


@pytest.fixture
def volume_folder(tmp_path):
    """raw.zarr (a 2-level pyramid), segmentation.zarr and labels.zarr of one volume."""
    folder = tmp_path / "results" / "vol"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (3, 60, 50)).astype(np.uint8)
    chunk_volume(write_tiff(tmp_path / "raw.tif", raw), folder / "raw.zarr", chunks=(1, 32, 32),
                 levels=2, voxel_size=VOXEL)  # fmt: skip
    segmentation = rng.integers(0, 6, raw.shape).astype(np.uint32)
    truth = (raw > 128).astype(np.uint8)
    label_store(folder / "segmentation.zarr", segmentation)
    label_store(folder / "labels.zarr", truth)
    return folder, raw, segmentation, truth


def read_view(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    nodes = list(Reader(parse_url(str(path)))())
    images = [n for n in nodes if n.load(Multiscales) and not n.load(Label)]
    labels = {n.metadata["name"]: n for n in nodes if n.load(Label)}
    return images, labels


def test_ome_zarr_reader_finds_the_labels_of_the_image(volume_folder):
    folder, raw, segmentation, truth = volume_folder
    assert main(["view", str(folder / "raw.zarr"), str(folder / "view.zarr"),
                 "--label", f"segmentation={folder / 'segmentation.zarr'}",
                 "--label", f"truth={folder / 'labels.zarr'}"]) == 0  # fmt: skip
    # moved with its folder, the view still finds its stores (relative links)
    shutil.move(folder.parent, folder.parent.parent / "moved")
    view = folder.parent.parent / "moved" / "vol" / "view.zarr"
    images, labels = read_view(view)
    assert len(images) == 1 and [level.shape for level in images[0].data] == [
        (3, 60, 50),
        (3, 30, 25),
    ]
    assert np.array_equal(np.asarray(images[0].data[0]), raw)
    assert set(labels) == {"segmentation", "truth"}
    assert np.array_equal(np.asarray(labels["segmentation"].data[0]), segmentation)
    assert np.array_equal(np.asarray(labels["truth"].data[0]), truth)
    colours = labels["segmentation"].metadata["color"]
    assert sorted(colours) == list(range(6)) and colours[0] == [0, 0, 0, 0]
    assert len({tuple(c) for c in colours.values()}) == 6
    scale = labels["truth"].metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == list(VOXEL)
    copied = {name for _, _, files in os.walk(view) for name in files}  # links not followed
    assert copied == {"zarr.json"}  # metadata only: the voxels stay in the stores beside it


def test_many_ids_are_left_to_the_viewers_palette(volume_folder):
    folder, _, segmentation, _ = volume_folder
    many = segmentation.copy()
    many[0, 0, 0] = MAX_LISTED_COLOURS + 1
    label_store(folder / "many.zarr", many)
    write_view(folder / "raw.zarr", folder / "view.zarr", {"segmentation": folder / "many.zarr"})
    _, labels = read_view(folder / "view.zarr")
    assert labels["segmentation"].metadata["color"] == {}


def test_a_store_that_is_not_an_ome_zarr_image_is_one_line(volume_folder, capsys):
    folder, raw, _, _ = volume_folder
    import zarr

    zarr.create_array(str(folder / "bare.zarr"), shape=raw.shape, dtype=raw.dtype)
    assert main(["view", str(folder / "bare.zarr"), str(folder / "view.zarr")]) == 1
    assert (
        "bare.zarr: a view needs an OME-Zarr 0.5 (Zarr v3) image group" in capsys.readouterr().err
    )
    assert not (folder / "view.zarr").exists()
