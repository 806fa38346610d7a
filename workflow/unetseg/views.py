"""One OME-Zarr store per volume that viewers open as an image with its label images: the raw
volume with the segmentation (and the ground truth, where there is one) in its `labels/` group,
as OME-NGFF 0.5 describes labels, so napari (napari-ome-zarr), ome-zarr-py and other NGFF
readers show the segmentation as labels over the raw data.

The view copies no voxels: its arrays are relative links to the stores beside it (raw.zarr,
segmentation.zarr, labels.zarr), so it costs nothing and stays true to them. Copy or move the
volume's folder whole (links within it keep working); `cp -L` makes a self-contained copy.
"""

from __future__ import annotations

import colorsys
import logging
import os
from pathlib import Path

import zarr

from unetseg import io
from unetseg.errors import UnetsegError
from unetseg.export import value_range

log = logging.getLogger(__name__)

MAX_LISTED_COLOURS = 4096  # past this many ids, viewers colour labels with their own palette
GOLDEN_RATIO = 0.618033988749895  # hue steps that keep neighbouring ids apart


def write_view(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    labels: dict[str, str | os.PathLike],
) -> None:
    """The view store `out` of the image `raw` with label images {name: store} (e.g.
    segmentation, truth)."""
    raw_group = ngff_group(raw)
    out = Path(out)
    with io.atomic_output(out) as tmp:
        view = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        image = dict(io.multiscale(raw_group), name=io.store_name(out))
        view.attrs.update({"ome": {"version": io.OME_VERSION, "multiscales": [image]}})
        link_datasets(raw, image, tmp, out)
        label_group = view.create_group("labels")
        label_group.attrs.update({"ome": {"version": io.OME_VERSION, "labels": list(labels)}})
        for name, store in labels.items():
            write_label(store, name, tmp / "labels" / name, out / "labels" / name)
    log.info("view of %s with labels %s written to %s", raw, ", ".join(labels), out)


def ngff_group(path) -> zarr.Group:
    """An OME-Zarr v3 multiscale group: what the view links to."""
    node = io.open_node(path)
    if not isinstance(node, zarr.Group) or node.metadata.zarr_format != 3:
        raise UnetsegError(f"{path}: a view needs an OME-Zarr 0.5 (Zarr v3) image group")
    if not io.multiscale(node).get("datasets"):
        raise UnetsegError(f"{path}: no OME-NGFF multiscales metadata")
    return node


def link_datasets(source, multiscale: dict, tmp: Path, final: Path) -> None:
    """Each level of `source`'s multiscale as a relative link in the view (made in `tmp`, valid
    where the view will be: `final`)."""
    for dataset in multiscale["datasets"]:
        target = Path(source).resolve() / dataset["path"]
        link = tmp / dataset["path"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(target, (final / dataset["path"]).parent.resolve()))


def write_label(store, name: str, tmp: Path, final: Path) -> None:
    """A label image of the view: the store's multiscale with `image-label` metadata (colours
    per id, 0 transparent) pointing back at the view's image."""
    group = ngff_group(store)
    multiscale = dict(io.multiscale(group), name=name)
    image_label = {"source": {"image": "../../"}}
    listed = colours(io.open_zarr(store))
    if listed:
        image_label["colors"] = listed
    label = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    label.attrs.update(
        {
            "ome": {
                "version": io.OME_VERSION,
                "multiscales": [multiscale],
                "image-label": image_label,
            }
        }
    )
    link_datasets(store, multiscale, tmp, final)


def colours(labels) -> list[dict]:
    """An RGBA colour for each id from 0 (transparent) to the largest, or none past
    MAX_LISTED_COLOURS ids: a viewer then uses its own label palette (listing only some would
    leave the others uncoloured in napari)."""
    lowest, highest = value_range(labels)
    if lowest < 0:
        raise UnetsegError(f"{labels.store}: negative label ids cannot be NGFF label values")
    if highest > MAX_LISTED_COLOURS:
        return []
    listed = [{"label-value": 0, "rgba": [0, 0, 0, 0]}]
    for value in range(1, highest + 1):
        red, green, blue = colorsys.hsv_to_rgb((value * GOLDEN_RATIO) % 1.0, 0.65, 0.95)
        listed.append(
            {"label-value": value, "rgba": [round(255 * c) for c in (red, green, blue)] + [255]}
        )
    return listed
