import numpy as np

from unetseg.data import demo_volume


def test_demo_volume_is_deterministic_and_isbi_like():
    raw, labels = demo_volume((3, 64, 80), seed=5, cell_diameter_px=20)
    raw2, labels2 = demo_volume((3, 64, 80), seed=5, cell_diameter_px=20)
    assert raw.dtype == np.uint8 and labels.dtype == np.uint8
    assert raw.shape == labels.shape == (3, 64, 80)
    assert np.array_equal(raw, raw2) and np.array_equal(labels, labels2)
    assert set(np.unique(labels)) == {0, 255}
    membrane = labels == 0
    assert 0.1 < membrane.mean() < 0.45
    assert raw[membrane].mean() < raw[~membrane].mean() - 50  # membranes are dark
    other, _ = demo_volume((3, 64, 80), seed=6, cell_diameter_px=20)
    assert not np.array_equal(raw, other)
