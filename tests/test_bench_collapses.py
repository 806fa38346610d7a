"""bench train-collapses: train_collapses_unhealed counted from the recorded runs themselves
(recipe figures over seeds, fold figures over folds; the newest record of each), not by hand."""

import json

from bench import recipe


def test_collapses_are_counted_per_run_and_per_kind_of_network(tmp_path, monkeypatch):
    results = tmp_path / "results.jsonl"
    entries = [
        {"name": "recipe_isbi_paper", "seeds": [0, 1], "unhealed": [False, True],
         "rollbacks": [1, 3], "settings": {"model": {"norm": "none"}}},
        {"name": "isbi_folds_group", "seed": 0, "folds": [4, 0], "unhealed": [False, False],
         "rollbacks": [0, 0], "settings": {"model": {"norm": "group"}}},
        {"name": "recipe_isbi_paper", "seeds": [1], "unhealed": [False], "rollbacks": [2],
         "fresh_starts": [1], "settings": {"model": {"norm": "none"}}},  # seed 1 again, newer
        {"name": "dsb_ap50", "value": 0.85},  # no runs in it
    ]  # fmt: skip
    results.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    recorded = []
    monkeypatch.setattr(recipe, "record", lambda *args, **extra: recorded.append((args, extra)))
    recipe.train_collapses(results)
    (name, value, unit, _), extra = recorded[0]
    assert (name, value, unit) == (
        "train_collapses_unhealed",
        0,
        "runs that ended collapsed, of 4 seeded CPU runs",
    )
    assert extra["by_norm"] == {
        "none": {"runs": 2, "rolled_back": 2, "started_afresh": 1, "unhealed": 0},
        "group": {"runs": 2, "rolled_back": 0, "started_afresh": 0, "unhealed": 0},
    }  # records before fresh starts count none
    results.write_text(results.read_text() + json.dumps(entries[0]) + "\n")
    recipe.train_collapses(results)
    assert recorded[1][0][1] == 1 and recorded[1][1]["unhealed_runs"] == [
        "recipe_isbi_paper seed 1"
    ]
