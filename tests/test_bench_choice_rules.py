"""`bench choice-rules`: other rules for choosing the kept network, scored on slices that did not
choose."""

import json

import numpy as np
import pytest
import torch

from bench import choice_rules
from tests.test_choice import counts_with_error, history
from unetseg import choice


def test_the_best_rule_scores_as_trainings_own_estimate():
    rng = np.random.default_rng(0)
    validations = history(rng.uniform(0.05, 0.4, size=(4, 12)).tolist(),
                          keepable=[True] * 10 + [False, True])  # fmt: skip
    summary = validations.summary("rand_error", ["z0", "z1", "z2", "z3"])
    scored = choice_rules.scored(validations, "rand_error", choice_rules.RULES["best"])
    assert scored["leave_one_slice_out"]["steps"] == summary["leave_one_slice_out"]["steps"]
    assert scored["leave_one_slice_out"]["rand_error"] == pytest.approx(
        summary["leave_one_slice_out"]["rand_error"]
    )


def test_a_moving_mean_prefers_a_plateau_to_a_lone_dip():
    # one validation dips to 0.05 among 0.4s; three in a row sit at 0.1
    curve = [0.4, 0.05, 0.4, 0.4, 0.1, 0.1, 0.1, 0.4]
    validations = history([curve, curve])
    assert choice_rules.RULES["best"](validations, [0, 1], "rand_error") == 1
    assert choice_rules.RULES["moving_mean_3"](validations, [0, 1], "rand_error") == 5
    np.testing.assert_allclose(choice_rules.moving_mean(np.array([1.0, 2, 3, 4]), 3),
                               [1.5, 2, 3, 3.5])  # fmt: skip


def test_last_and_pixel_rules_never_keep_a_suspect_network():
    validations = history([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]], keepable=[True, True, False])
    assert choice_rules.RULES["last"](validations, [0, 1], "rand_error") == 1
    assert choice_rules.RULES["best_pixel_error"](validations, [0, 1], "rand_error") == 1


def test_halves_choose_on_one_half_and_score_on_the_other():
    # slices 0 and 1 favour validation 0, slices 2 and 3 validation 1
    validations = history([[0.1, 0.3], [0.1, 0.3], [0.3, 0.2], [0.3, 0.2]])
    scored = choice_rules.scored(validations, "rand_error", choice_rules.RULES["best"])
    # {0,1} keeps validation 0 and scores {2,3} at 0.3; {2,3} keeps 1 and scores {0,1} at 0.3;
    # each of the four mixed halves keeps 0 (0.2 against 0.25) and scores the other one with it
    mixed = choice.errors([counts_with_error(0.1), counts_with_error(0.3)])["rand_error"]
    assert scored["halves_mean_rand_error"] == pytest.approx((0.3 + 0.3 + 4 * mixed) / 6)


def test_runs_load_from_scores_and_from_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(choice_rules, "RUNS", tmp_path)
    rows = np.tile([90, 10, 10], (11, 1)).tolist()
    scores = {"000250": [{"pixel": rows, "rand_n2": rows}] * 2, "average_of_last_4": []}
    from_scores = tmp_path / "a/results/model"
    from_scores.mkdir(parents=True)
    (from_scores.parent.parent / "scores.json").write_text(json.dumps(scores))
    (from_scores / "train_log.tsv").write_text("step\tevent\n250\tvalidated\n")
    validations = history([[0.1, 0.2], [0.2, 0.1]])
    from_checkpoint = tmp_path / "b/results/model"
    from_checkpoint.mkdir(parents=True)
    torch.save({"validations": validations.state_dict()}, from_checkpoint / "checkpoint.pt")
    for folder in (from_scores, from_checkpoint):
        torch.save({"train_config": {"keep_by": "rand_error"}}, folder / "model.pt")
    loaded = choice_rules.load([("a", "a", "scores"), ("b", "b", "checkpoint"),
                                ("c", "c", "checkpoint")])  # fmt: skip
    assert [name for name, _, _ in loaded] == ["a", "b"]  # c has no finished run
    assert loaded[0][1].steps == [250] and loaded[0][1].keepable == [True]
    assert choice.errors(loaded[0][1].counts[0])["rand_error"] == pytest.approx(0.1)
    assert loaded[1][1].steps == validations.steps
