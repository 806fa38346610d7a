"""Label conventions shared by the stages: binary interior masks and instance ids, and an
optional ignore label that marks unannotated pixels (sparse annotation); and the cells of a
slice of any size, found chunk by chunk (the weights and segment stages)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import zarr

from unetseg import blocks, io
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


def label_slice_by_chunks(
    source, target, z: int, foreground: Callable, first_id: int, min_size_px: int = 0
) -> int:
    """4-connected components of foreground(source[z]) (a boolean mask, computed pixel by pixel)
    into target[z], with one chunk of target in memory at a time, whatever the slice's size;
    returns their count. The ids are first_id + 1, ... in the order ndimage.label numbers them
    on the whole slice (the raster order of each component's first pixel); components of fewer
    than `min_size_px` pixels become background: the result is that of segment.segment_slice on
    the slice at once. The two passes are `provisional_ids` and `write_final_ids`."""
    final_ids = provisional_ids(source, target, z, foreground, min_size_px)
    write_final_ids(target, z, final_ids, first_id)
    return int(final_ids.max())


def provisional_ids(
    source, target, z: int, foreground: Callable, min_size_px: int = 0
) -> np.ndarray:
    """Pass 1 of label_slice_by_chunks: label each chunk of foreground(source[z]) on its own
    into target[z], with provisional ids unique in the slice, noting the ids that touch across
    chunk borders, each id's first pixel and size. Returns each provisional id's final id:
    1, 2, ... in the raster order of the components' first pixels, 0 for the background and
    components of fewer than `min_size_px` pixels. Slices of one array can be labelled at once;
    the ids of one slice do not depend on the others (write_final_ids numbers them on)."""
    from scipy import ndimage  # here: chunking imports this module and needs no scipy
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    width = source.shape[2]
    count, joins = 0, []
    first_pixel = [np.array([-1])]  # provisional id 0, the background, ranks first
    sizes = [np.array([0])]
    last_row = np.zeros(width, np.uint32)  # provisional ids of the row above this chunk row
    last_column = None  # of the chunk to the left, where the chunk does not start a row
    for ys, xs in blocks.chunk_windows(source.shape[1:], target.chunks[1:]):
        offset, shape = blocks.window_region(z, ys, xs)
        interior = foreground(blocks.read_block(source, offset, shape)[0])
        ids, found = ndimage.label(interior, structure=FOUR_CONNECTED, output=np.uint32)
        first_y, first_x = first_pixels(ids, found)
        first_pixel.append((ys.start + first_y) * width + xs.start + first_x)
        sizes.append(np.bincount(ids.ravel(), minlength=found + 1)[1:])
        ids[interior] += count
        borders = [(ids[0], last_row[xs])] + ([(ids[:, 0], last_column)] if xs.start else [])
        for here, there in borders:
            touching = (here > 0) & (there > 0)
            joins.append(np.stack([here[touching], there[touching]]))
        last_row[xs], last_column = ids[-1], ids[:, -1].copy()
        blocks.write_block(target, offset, ids[np.newaxis])
        count += found

    edges = np.concatenate(joins, axis=1)
    graph = coo_matrix((np.ones(edges.shape[1], np.int8), tuple(edges)), (count + 1, count + 1))
    n_components, component = connected_components(graph, directed=False)
    first_of_component = np.full(n_components, np.iinfo(np.int64).max)
    np.minimum.at(first_of_component, component, np.concatenate(first_pixel))
    size = np.zeros(n_components, np.int64)
    np.add.at(size, component, np.concatenate(sizes))
    kept = size >= min_size_px
    kept[component[0]] = True  # the background
    rank = np.zeros(n_components, np.int64)  # dropped components: 0, the background
    ordered = np.argsort(first_of_component)
    ordered = ordered[kept[ordered]]
    rank[ordered] = np.arange(len(ordered))  # the background: 0
    return rank[component]


def write_final_ids(
    target, z: int, final_ids: np.ndarray, first_id: int, provisional: Callable | None = None
) -> None:
    """Pass 2: rewrite slice z of target chunk by chunk with final_ids[provisional id] + first_id
    (0 stays 0). The provisional ids of a window (ys, xs) are target's own, or `provisional`'s."""
    lookup = np.where(final_ids > 0, final_ids + first_id, 0).astype(np.uint32)
    for ys, xs in blocks.chunk_windows(target.shape[1:], target.chunks[1:]):
        offset, shape = blocks.window_region(z, ys, xs)
        ids = (
            blocks.read_block(target, offset, shape) if provisional is None else provisional(ys, xs)
        )
        blocks.write_block(target, offset, lookup[ids].reshape(shape))


def scratch_ids(path, shape, chunks):
    """A scratch Zarr array of uint32 cell ids (lz4: runs of one id compress well), for
    label_slice_by_chunks to write into."""
    return zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=np.uint32,
                             compressors=io.blosc("lz4"), fill_value=0)  # fmt: skip


def first_pixels(ids: np.ndarray, found: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of the first pixel in raster order of each of ids 1 .. found: in the first row of
    its bounding box, the leftmost pixel of that id. Their rank in the slice is the same, as
    a chunk's raster order is the slice's among the chunk's pixels."""
    from scipy import ndimage

    first_y = np.array([box[0].start for box in ndimage.find_objects(ids)], np.int64)
    first_row_of = np.concatenate([[-1], first_y])  # the background's: none
    in_first_row = first_row_of[ids] == np.arange(ids.shape[0])[:, np.newaxis]
    ys, xs = np.nonzero(in_first_row)
    first_x = np.full(found + 1, ids.shape[1])
    np.minimum.at(first_x, ids[ys, xs], xs)
    return first_y, first_x[1:]
