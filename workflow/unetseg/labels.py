"""Label conventions shared by the stages: binary interior masks and instance ids, and an
optional ignore label that marks unannotated pixels (sparse annotation)."""

from __future__ import annotations

import numpy as np

from unetseg import io
from unetseg.errors import UnetsegError
from unetseg.stores import is_zarr

# 4-connectivity in 2D, as the paper's cells and the ISBI 2012 metrics use it.
FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)

BINARY = "binary"
INSTANCE = "instance"
KINDS = (BINARY, INSTANCE)


def label_kind(values: np.ndarray, name: str = "labels") -> str:
    """'binary' for {0,1} or {0,255} masks, 'instance' for integer ids; raise otherwise."""
    if not np.issubdtype(values.dtype, np.integer):
        raise UnetsegError(f"{name}: labels must be integers, got {values.dtype}")
    unique = np.unique(values)
    if set(unique.tolist()) <= {0, 1} or set(unique.tolist()) <= {0, 255}:
        return BINARY
    if unique[0] < 0:
        raise UnetsegError(f"{name}: labels are neither binary (0/255, 0/1) nor ids >= 0")
    if values.dtype.itemsize < 2:
        raise UnetsegError(
            f"{name}: uint8 labels with values {unique[:6].tolist()}... are neither binary "
            "(0/255 or 0/1) nor instance ids (uint16/uint32); declare the volume's label_kind "
            "(binary or instance) if they are one of these"
        )
    return INSTANCE


def volume_kind(volume, name: str = "labels") -> str:
    """`label_kind` of a volume read a slice at a time; only its distinct values are kept."""
    distinct = [np.unique(np.asarray(volume[z])) for z in range(volume.shape[0])]
    return label_kind(np.unique(np.concatenate(distinct)).astype(volume.dtype), name)


def declared_kind(values: np.ndarray, declared: str, name: str = "labels") -> str:
    """The kind the config declares ('binary', 'instance'), checked against the values, or the
    detected one for 'auto'. A declaration settles what detection cannot: uint8 instance ids, or
    a binary mask stored with another foreground value (non-zero = interior)."""
    if declared == "auto":
        return label_kind(values, name)
    if declared not in KINDS:
        raise UnetsegError(f"{name}: label kind '{declared}' is not one of auto, binary, instance")
    if not np.issubdtype(values.dtype, np.integer):
        raise UnetsegError(f"{name}: labels must be integers, got {values.dtype}")
    if values.min() < 0:
        raise UnetsegError(f"{name}: {declared} labels must be >= 0, found {values.min()}")
    return declared


def store_conventions(labels_path) -> tuple[str, int | None]:
    """(kind, ignore label) that `chunk` recorded in a labels store; a store made elsewhere has
    its kind detected from its first slice."""
    attrs = io.zarr_attrs(labels_path)
    kind = attrs.get("label_kind") or label_kind(io.open_zarr(labels_path)[:1], str(labels_path))
    return kind, attrs.get("ignore_label")


def require_dense(labels_path) -> None:
    """Refuse a sparsely annotated labels store where every pixel must be scored."""
    ignore = io.zarr_attrs(labels_path).get("ignore_label") if is_zarr(labels_path) else None
    if ignore is not None:
        raise UnetsegError(
            f"{labels_path}: sparse labels (ignore_label {ignore}); the ISBI metrics need every "
            "pixel labelled"
        )


def annotated(labels: np.ndarray, ignore: int | None) -> np.ndarray:
    """Pixels that carry a label: all but those of the ignore label (sparse annotation)."""
    return np.ones(labels.shape, bool) if ignore is None else labels != ignore


def without_ignored(labels: np.ndarray, ignore: int | None) -> np.ndarray:
    """The labels with unannotated pixels set to 0, so they belong to no cell."""
    if ignore is None:
        return labels
    return np.where(labels == ignore, labels.dtype.type(0), labels)


def cells(labels_2d: np.ndarray, kind: str, ignore: int | None = None) -> np.ndarray:
    """Cell ids of one slice: 4-connected components of the interior, or the instance ids."""
    labels_2d = without_ignored(labels_2d, ignore)
    if kind == INSTANCE:
        return labels_2d.astype(np.int64)
    from scipy import ndimage  # here: chunking imports this module and needs no scipy

    ids, _ = ndimage.label(labels_2d > 0, structure=FOUR_CONNECTED)
    return ids


def interior(labels: np.ndarray, kind: str, ignore: int | None = None) -> np.ndarray:
    """Cell-interior mask; for instance ids, touching cells are separated by a 1-px border.

    The separation border follows the paper's Fig. 3: a pixel next to a different id is background.
    Unannotated pixels (`ignore`) are not interior, and a cell meeting them gets no border there.
    """
    labels = without_ignored(labels, ignore)
    if kind == BINARY:
        return labels > 0
    foreground = labels > 0
    border = np.zeros_like(foreground)
    for axis in (-2, -1):
        ahead = np.moveaxis(labels, axis, 0)
        differs = (ahead[1:] != ahead[:-1]) & (ahead[1:] > 0) & (ahead[:-1] > 0)
        moved = np.moveaxis(border, axis, 0)
        moved[1:] |= differs
    return foreground & ~border
