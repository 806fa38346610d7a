import numpy as np
import pytest

from unetseg import choice, evaluate

N_THRESHOLDS = len(evaluate.PIXEL_RAND_THRESHOLDS)


def counts_with_error(error: float, ap50: float | None = None) -> choice.SliceCounts:
    """A slice whose pixel and Rand errors are `error` at every threshold: TP = 1000 (1 - e),
    FP = FN = 1000 e gives F = 1 - e; cells TP = 100 AP, FP = 100 - TP."""
    rows = np.tile([1000 * (1 - error), 1000 * error, 1000 * error], (N_THRESHOLDS, 1))
    cells = None if ap50 is None else np.tile([100 * ap50, 100 * (1 - ap50), 0], (N_THRESHOLDS, 1))
    return choice.SliceCounts(rows, rows.copy(), cells)


def history(errors_by_slice: list[list[float]], keepable=None) -> choice.Validations:
    """Validations every 10 steps; errors_by_slice[s][v]: slice s's error at validation v."""
    validations = choice.Validations()
    for v, per_slice in enumerate(zip(*errors_by_slice, strict=True)):
        counts = [counts_with_error(e) for e in per_slice]
        validations.add(10 * (v + 1), counts, True if keepable is None else keepable[v])
    return validations


def test_each_slice_is_scored_by_the_validation_the_other_slices_chose():
    # Pooled (equal totals: the mean) 0.25, 0.2, 0.25: training keeps step 20.
    validations = history([[0.1, 0.3, 0.2], [0.4, 0.1, 0.3]])
    summary = validations.summary("rand_error", ["a z0", "a z1"])
    assert summary["kept"]["step"] == 20
    assert summary["kept"]["rand_error"] == pytest.approx(0.2)
    # Slice 0 is scored by step 20 (slice 1's best: 0.3), slice 1 by step 10 (slice 0's: 0.4).
    estimate = summary["leave_one_slice_out"]
    assert estimate["steps"] == [20, 10]
    assert estimate["rand_error"] == pytest.approx(0.35)
    assert estimate["pixel_error"] == pytest.approx(0.35)
    assert summary["flattery"]["rand_error"] == pytest.approx(0.15)
    assert summary["validations"] == 3 and summary["slices"] == ["a z0", "a z1"]


def test_the_choice_is_trainings_the_later_of_equals_and_never_a_suspect_network():
    # Step 40 ties step 20 (0.2): the later is kept; step 50 is best but was not keepable.
    validations = history([[0.1, 0.3, 0.2, 0.2, 0.0], [0.4, 0.1, 0.3, 0.2, 0.0]],
                          keepable=[True, True, True, True, False])  # fmt: skip
    assert validations.chosen([0, 1], "rand_error") == 3
    assert validations.chosen([1], "rand_error") == 1
    assert validations.summary("rand_error", ["z0", "z1"])["kept"]["step"] == 40


def test_kept_by_ap50_the_highest_pooled_ap_chooses():
    validations = choice.Validations()
    for step, (error, ap50) in enumerate([(0.1, 0.5), (0.3, 0.8), (0.2, 0.7)], start=1):
        validations.add(step, [counts_with_error(error, ap50)] * 2, True)
    assert validations.chosen([0, 1], "ap50") == 1
    assert validations.chosen([0, 1], "rand_error") == 0
    summary = validations.summary("ap50", ["z0", "z1"])
    assert summary["kept"]["ap50"] == pytest.approx(0.8)
    assert summary["leave_one_slice_out"]["ap50"] == pytest.approx(0.8)


def test_one_slice_gives_no_estimate():
    one = history([[0.3, 0.2]]).summary("rand_error", ["only z0"])
    assert one["kept"]["step"] == 20 and one["leave_one_slice_out"] is None
    assert "flattery" not in one


def test_a_restored_history_chooses_as_the_original():
    validations = history([[0.1, 0.3, 0.2], [0.4, 0.1, 0.3]])
    restored = choice.Validations()
    restored.load_state_dict(validations.state_dict())
    assert restored.summary("rand_error", ["z0", "z1"]) == validations.summary(
        "rand_error", ["z0", "z1"]
    )


def test_slices_are_named_by_the_volume_folder_of_their_labels_store():
    assert choice.slice_name("results/isbi_validate/labels.zarr", 3) == "isbi_validate z3"
    assert choice.slice_name("/data/em_labels.zarr", 0) == "em_labels.zarr z0"
