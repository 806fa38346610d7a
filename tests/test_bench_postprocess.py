"""`bench isbi-fill-holes`' closing: small false membrane inside a cell is filled, membrane
that separates cells (a 1-px diagonal one too, under the metrics' 4-connected cells) is not."""

import numpy as np
from scipy import ndimage

from bench.postprocess import close_holes

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def test_a_small_hole_in_a_cell_is_filled_at_every_threshold():
    probability = np.full((40, 40), 0.9, np.float32)
    probability[18:21, 18:21] = 0.1  # 9 px of false membrane
    closed = close_holes(probability, 20)
    assert closed.min() == np.float32(0.9)
    assert np.array_equal(close_holes(probability, 5), probability)  # larger than 5 px: kept


def test_a_diagonal_membrane_that_splits_two_cells_is_kept():
    probability = np.full((30, 30), 0.9, np.float32)
    for i in range(30):
        probability[i, i] = 0.2  # 30 px, 8-connected: two 4-connected cells on either side
    closed = close_holes(probability, 20)  # one 30-px component, not 30 of 1 px
    assert ndimage.label(closed > 0.5, FOUR_CONNECTED)[1] == 2
    assert np.array_equal(closed, probability)
