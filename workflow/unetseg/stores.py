"""What kind of input a path is, and the codecs a store may use: without importing zarr, so the
Snakefile and the CLI's parser can ask cheaply."""

from __future__ import annotations

import os
from pathlib import Path

BLOSC_COMPRESSORS = ("zstd", "lz4", "lz4hc", "blosclz", "zlib")  # as the config schema offers
# Probability maps barely compress (1.2-1.3x); lz4 encodes them 2.8x as fast as zstd, for files
# 8.5 % larger, and on a GPU encoding is the CPU's largest cost per chunk (predict-codecs).
PROBABILITY_CODEC = {"cname": "lz4", "clevel": 1}


def is_zarr(path: str | os.PathLike) -> bool:
    """A Zarr v3 or v2 store (group or array), as opposed to a folder of TIFF slices."""
    return any((Path(path) / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))
