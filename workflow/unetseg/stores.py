"""What kind of input a path is; pure pathlib, so the Snakefile can ask without importing zarr."""

from __future__ import annotations

import os
from pathlib import Path


def is_zarr(path: str | os.PathLike) -> bool:
    """A Zarr v3 or v2 store (group or array), as opposed to a folder of TIFF slices."""
    return any((Path(path) / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))
