import numpy as np
import pytest
import tifffile

from unetseg import UnetsegError
from unetseg.datasets import DSB2018_IMAGES, write_dsb2018


def fake_stage1_train(folder, image_ids, shape=(6, 8)):
    """BBBC038's layout: <id>/images/<id>.png (RGBA, R = G = B) and one binary PNG per nucleus."""
    from skimage.io import imsave

    for n, image_id in enumerate(image_ids):
        (folder / image_id / "images").mkdir(parents=True)
        (folder / image_id / "masks").mkdir()
        grey = np.full(shape, 10 * n, np.uint8)
        imsave(folder / image_id / "images" / f"{image_id}.png",
               np.dstack([grey, grey, grey, np.full(shape, 255, np.uint8)]), check_contrast=False)  # fmt: skip
        for k, name in enumerate(("b", "a")):  # file names sorted: a is nucleus 1, b nucleus 2
            mask = np.zeros(shape, np.uint8)
            mask[k * 3 : k * 3 + 2, n : n + 2] = 255
            imsave(folder / image_id / "masks" / f"{name}.png", mask, check_contrast=False)


def test_the_dsb_images_become_a_raw_and_an_instance_tiff(tmp_path):
    fake_stage1_train(tmp_path / "stage1_train", ["id0", "id1"])
    write_dsb2018(tmp_path / "stage1_train", tmp_path / "out", ["id0", "id1"])
    raw, labels = (
        tifffile.imread(tmp_path / "out/raw.tif"),
        tifffile.imread(tmp_path / "out/labels.tif"),
    )
    assert raw.shape == labels.shape == (2, 6, 8) and labels.dtype == np.uint16
    assert raw[1, 0, 0] == 10
    assert labels[1, 3, 1] == 1 and labels[1, 0, 1] == 2  # mask a.png (rows 3-4) is nucleus 1


def test_the_shipped_list_names_thirty_images_and_a_missing_one_is_named(tmp_path):
    assert len(DSB2018_IMAGES.read_text().split()) == 30
    with pytest.raises(UnetsegError, match="nope.png: not found"):
        write_dsb2018(tmp_path, tmp_path / "out", ["nope"])
