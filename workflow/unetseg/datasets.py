"""Public data sets as the workflow reads them: the 2018 Data Science Bowl nuclei (BBBC038,
stage1_train) as a TIFF of images and a TIFF of instance labels (config/dsb2018.yaml)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetseg.errors import UnetsegError

DSB2018_IMAGES = Path(__file__).resolve().parents[2] / "config" / "dsb2018-images.txt"


def dsb2018_stack(stage1_train: str | os.PathLike, image_ids: list[str]):
    """(raw, labels) of the images `image_ids` of a stage1_train folder (<id>/images/<id>.png,
    <id>/masks/*.png): raw the R channel of each PNG (uint8), labels uint16 with nucleus k the
    k-th mask file in name order (each mask binary; none overlap)."""
    from skimage.io import imread

    raws, labels = [], []
    for image_id in image_ids:
        folder = Path(stage1_train) / image_id
        image_path = folder / "images" / f"{image_id}.png"
        if not image_path.exists():
            raise UnetsegError(f"{image_path}: not found (is {stage1_train} stage1_train?)")
        image = imread(image_path)
        raws.append(image[..., 0] if image.ndim == 3 else image)
        ids = np.zeros(raws[-1].shape, np.uint16)
        for k, mask_path in enumerate(sorted((folder / "masks").glob("*.png")), 1):
            ids[imread(mask_path) > 0] = k
        labels.append(ids)
    if len({raw.shape for raw in raws}) > 1:
        raise UnetsegError("dsb2018: the images differ in size; one volume holds one size")
    return np.stack(raws), np.stack(labels)


def write_dsb2018(stage1_train, out_folder, image_ids: list[str] | None = None) -> None:
    """raw.tif and labels.tif of the 30 images config/dsb2018.yaml reads, in out_folder."""
    import tifffile

    image_ids = image_ids or DSB2018_IMAGES.read_text().split()
    raw, labels = dsb2018_stack(stage1_train, image_ids)
    Path(out_folder).mkdir(parents=True, exist_ok=True)
    for name, array in (("raw.tif", raw), ("labels.tif", labels)):
        tifffile.imwrite(Path(out_folder) / name, array, photometric="minisblack",
                         compression="zlib")  # fmt: skip
