"""Tile geometry of the valid-convolution U-Net (paper §2, Fig. 1).

Each level loses 4 px to its two unpadded 3x3 convolutions; every 2x2 max-pool must see an even
size. For 4 poolings, valid inputs are 16k + 60 and outputs 16k - 124 (572 -> 388).
"""

from __future__ import annotations

import numpy as np

from unetseg.errors import UnetsegError


def output_size(input_size: int, depth: int) -> int | None:
    """Output size of the network for `input_size`, or None if that input is not valid."""
    size = input_size
    for _ in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 4
    if size <= 0:
        return None
    for _ in range(depth):
        size = 2 * size - 4
    return size if size > 0 else None


def input_size(output_size_px: int, depth: int) -> int | None:
    """Input size that yields `output_size_px`, or None if no input does."""
    size = output_size_px
    for _ in range(depth):
        if (size + 4) % 2:
            return None
        size = (size + 4) // 2
    size += 4
    for _ in range(depth):
        size = 2 * size + 4
    return size if output_size(size, depth) == output_size_px else None


def grid_px(depth: int) -> int:
    """Translation step under which the network is equivariant (one px at the bottom level)."""
    return 2**depth


def context_px(depth: int) -> int:
    """Pixels lost on each side of a tile (92 for the paper's 4 poolings)."""
    smallest_output = smallest_valid_output(depth)
    return (input_size(smallest_output, depth) - smallest_output) // 2


def smallest_valid_output(depth: int) -> int:
    size = 1
    while input_size(size, depth) is None:
        size += 1
    return size


def smallest_tile_output(depth: int) -> int:
    """Smallest valid output size that can tile a slice on the 2**depth grid without gaps."""
    size = smallest_valid_output(depth)
    step = grid_px(depth)
    return size + (max(step - size, 0) + step - 1) // step * step


def nearest_valid_outputs(size: int, depth: int) -> list[int]:
    """The tile output sizes just below and just above `size` (one if `size` is below all)."""
    first = smallest_tile_output(depth)
    step = grid_px(depth)
    if size <= first:
        return [first]
    below = first + (size - first) // step * step
    return [below] if below == size else [below, below + step]


def check_output_size(size: int, depth: int, key: str = "tile output size") -> int:
    """Return `size` if it is a valid tile output size, else raise naming the nearest valid ones."""
    if input_size(size, depth) is None or size < smallest_tile_output(depth):
        nearest = " or ".join(str(s) for s in nearest_valid_outputs(size, depth))
        raise UnetsegError(
            f"{key}: {size} px is not a valid U-Net output size for depth {depth}; "
            f"nearest valid: {nearest}"
        )
    return size


def tile_origins(start: int, stop: int, tile_out: int, depth: int) -> list[int]:
    """Output tile origins on the network's 2**depth grid whose tiles cover [start, stop).

    Origins on that grid make stitched tiles equal whole-image inference exactly (PAPER.md §5).
    """
    grid = grid_px(depth)
    return list(range(start - start % grid, stop, tile_stride(tile_out, depth)))


def input_span(origins: list[int], tile_out: int, depth: int) -> tuple[int, int]:
    """The input px (start, stop) along one axis that tiles at these output origins read: their
    outputs and the context around them."""
    context = context_px(depth)
    return origins[0] - context, origins[-1] - context + input_size(tile_out, depth)


def tile_stride(tile_out: int, depth: int) -> int:
    """Distance between neighbouring tile origins: the output size rounded down to the grid."""
    return tile_out - tile_out % grid_px(depth)


def blocking_cost(size: tuple[int, int], block_px: int, tile_out: int, depth: int) -> float:
    """How many tiles a slice of `size` takes when cut into blocks of block_px, relative to the
    fewest it could take (blocks the size of the slice). A block that is not a multiple of the
    tile stride makes its last tiles hang over its edge, and what they compute there is dropped:
    blocks of 512 px with 388-px tiles take 2 x 2 tiles each, 2.3 times the area they keep."""
    ratios = [tiles_across(n, block_px, tile_out, depth) / tiles_across(n, n, tile_out, depth)
              for n in size]  # fmt: skip
    return float(np.prod(ratios))


def tiles_across(length: int, block_px: int, tile_out: int, depth: int) -> int:
    """Tiles along one axis of `length` px cut into blocks of block_px, each tiled on its own."""
    return sum(
        len(tile_origins(start, min(start + block_px, length), tile_out, depth))
        for start in range(0, length, block_px)
    )


def whole_image_padding(length: int, depth: int) -> tuple[int, int]:
    """Mirror padding (before, after) so one network pass yields at least `length` outputs."""
    out = nearest_valid_outputs(max(length, 1), depth)[-1]
    context = context_px(depth)
    return context, input_size(out, depth) - length - context


def reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Indices `start..stop-1` folded into `0..length-1` by mirroring without repeating the edge.

    Equals numpy's 'reflect' padding for any pad width, including pads wider than the array.
    """
    index = np.arange(start, stop)
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index < length, index, period - index)
