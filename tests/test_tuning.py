import numpy as np
import pytest
from conftest import write_tiff

from unetseg.chunk import chunk_volume
from unetseg.evaluate import instance_metrics
from unetseg.segment import segment_slice
from unetseg.tuning import tune_segmentation


def nuclei(shape, seed):
    """Discs of radius 9-11 on a jittered 19-px grid, a few of each row's neighbours touching:
    (true ids, nearest centre within the union; probability: the union with soft edges, one
    blob where discs touch)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    distance = np.full((0, *shape), np.inf)
    centres = [(y + rng.uniform(-3, 3), x + rng.uniform(-3, 3), rng.uniform(9, 11))
               for y in range(12, shape[0] - 8, 19) for x in range(12, shape[1] - 8, 19)]  # fmt: skip
    distance = np.stack([np.hypot(yy - y, xx - x) - r for y, x, r in centres])
    nearest = distance.min(axis=0)
    truth = np.where(nearest < 0, distance.argmin(axis=0) + 1, 0).astype(np.uint16)
    probability = (1 / (1 + np.exp(2 * nearest))).astype(np.float32)
    return truth, probability


@pytest.fixture
def discs(tmp_path):
    truth, probability = (
        np.stack(a) for a in zip(*(nuclei((80, 80), s) for s in (5, 6)), strict=True)
    )
    chunk_volume(write_tiff(tmp_path / "p.tif", probability), tmp_path / "p.zarr")
    chunk_volume(write_tiff(tmp_path / "t.tif", truth), tmp_path / "t.zarr", is_labels=True,
                 label_kind="instance")  # fmt: skip
    return tmp_path, probability, truth


def test_the_tuned_settings_are_the_best_of_the_grid(discs):
    folder, probability, truth = discs
    tuned = tune_segmentation([folder / "p.zarr"], [folder / "t.zarr"], "auto", None, 5)
    best = max(tuned["candidates"], key=lambda c: c["ap50"])
    assert tuned["ap50"] == best["ap50"] and len(tuned["candidates"]) == 9 * 6
    # Each candidate's AP50 is that of segmenting with it.
    for candidate in tuned["candidates"][::7]:
        segmented = np.stack([segment_slice(p, candidate["threshold"], None, 5,
                                            candidate["split_h"])[0] for p in probability])  # fmt: skip
        assert instance_metrics(truth, segmented)["ap50"] == pytest.approx(candidate["ap50"])
    # Splitting pays on touching discs: better than any plain threshold.
    plain = max(c["ap50"] for c in tuned["candidates"] if c["split_h"] is None)
    assert tuned["split_h"] is not None and tuned["ap50"] > plain


def test_a_fixed_split_depth_tunes_the_threshold_alone(discs):
    folder, _, _ = discs
    tuned = tune_segmentation([folder / "p.zarr"], [folder / "t.zarr"], 2.0)
    assert {c["split_h"] for c in tuned["candidates"]} == {2.0} and tuned["split_h"] == 2.0
