from pathlib import Path

import numpy as np
import pytest
import tifffile

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "data" / "isbi2012"


@pytest.fixture(scope="session")
def isbi_labels() -> np.ndarray:
    path = ISBI / "train-labels.tif"
    if not path.exists():
        pytest.skip(f"ISBI 2012 data not found at {ISBI}")
    return tifffile.imread(path)


@pytest.fixture(scope="session")
def demo_arrays() -> tuple[np.ndarray, np.ndarray]:
    from unetseg.data import demo_volume

    return demo_volume((4, 96, 96), seed=1, cell_diameter_px=24)


def write_tiff(path: Path, array: np.ndarray, **kwargs) -> Path:
    if not kwargs.get("imagej"):
        kwargs.setdefault("photometric", "minisblack")  # else tifffile takes (3, y, x) for RGB
    tifffile.imwrite(path, array, **kwargs)
    return path
