"""`bench isbi-folds`' splits of ISBI 2012's 20 labelled slices and its per-arm summary."""

import pytest
import yaml

from bench import recipe
from bench.record import REPO

ISBI_VOLUMES = yaml.safe_load((REPO / "config" / "isbi2012.yaml").read_text())["volumes"]


def slices_of(volumes: list[dict], role: str) -> list[int]:
    return [z for v in volumes if v["role"] == role for z in range(*v["slices"])]


@pytest.mark.parametrize("fold", range(5))
def test_each_fold_holds_out_four_slices_and_trains_on_the_other_sixteen(fold):
    volumes = recipe.fold_volumes(ISBI_VOLUMES, fold)
    held_out, trained = slices_of(volumes, "validate"), slices_of(volumes, "train")
    assert held_out == list(range(4 * fold, 4 * fold + 4))
    assert sorted(trained + held_out) == list(range(20))
    assert {v["raw"] for v in volumes} == {"data/isbi2012/train-volume.tif"}
    assert all(v["labels"] == "data/isbi2012/train-labels.tif" for v in volumes)
    assert len({v["name"] for v in volumes}) == len(volumes)
    assert not any(v["role"] == "predict" for v in volumes)  # the test slices are not needed


def test_only_the_last_fold_is_the_configs_split_and_reuses_the_recipe_run():
    assert [recipe.is_config_split(ISBI_VOLUMES, fold) for fold in range(5)] == [False] * 4 + [True]


def test_fold_spread_gives_mean_and_std_of_each_error():
    runs = [{"rand_error": 0.1, "pixel_error": 0.05, "ap50": 0.7},
            {"rand_error": 0.3, "pixel_error": 0.07, "ap50": 0.5}]  # fmt: skip
    spread = recipe.fold_spread(runs)
    assert spread["rand_error"] == [0.1, 0.3] and spread["ap50"] == [0.7, 0.5]
    assert spread["rand_error_mean_std"] == pytest.approx([0.2, 0.1])
    assert spread["pixel_error_mean_std"] == pytest.approx([0.06, 0.01])
    assert "ap50_mean_std" not in spread  # errors only
    older = recipe.fold_spread([{**runs[0], "leave_one_out_rand_error": None},
                                {**runs[1], "leave_one_out_rand_error": 0.4}])  # fmt: skip
    assert "leave_one_out_rand_error_mean_std" not in older  # a run trained before the estimate


def test_an_arm_keeps_the_budgets_steps_and_may_set_its_own_minutes():
    assert recipe.arm_overlay("isbi", "group_ema")["train"] == {
        "steps": 1500, "max_minutes": 30, "ema_decay": 0.999}  # fmt: skip
    wide = recipe.arm_overlay("isbi", "group_ema_32")
    assert wide["train"]["steps"] == 1500 and wide["train"]["max_minutes"] == 50
    assert wide["model"] == {"norm": "group", "base_channels": 32}
    assert recipe.BUDGETS["isbi"]["train"]["max_minutes"] == 30  # the budget itself untouched


def test_a_runs_figures_name_the_kept_model_and_its_validation_error(tmp_path):
    import json

    (tmp_path / "v").mkdir()
    (tmp_path / "model").mkdir()
    errors = {"pixel_error": 0.06, "rand_error": 0.2, "warping_error": 0.001}
    (tmp_path / "v/metrics.json").write_text(json.dumps(errors))
    (tmp_path / "v/instance_metrics.json").write_text(json.dumps({"ap50": 0.7, "mean_ap": 0.4}))
    header = "step\tloss\tpixel_error\trand_error\tlr\ts\trand_spread\tsamples_per_s\tevent"
    rows = ["250\t0.8\t0.07\t0.30\t0.01\t1\t0\t2\t", "500\t0.7\t0.06\t0.18\t0.01\t2\t0.1\t2\t",
            "750\t0.7\t0.06\t0.18\t0.01\t3\t0.1\t2\t", "1000\t0.6\t0.06\t0.25\t0.01\t4\t0.1\t2\t"]  # fmt: skip
    (tmp_path / "model/train_log.tsv").write_text("\n".join([header, *rows]) + "\n")
    figures = recipe.figures_of(tmp_path, "v")
    assert (figures["kept_step"], figures["kept_validation_rand_error"]) == (750, 0.18)
    assert figures["rand_error"] == 0.2 and figures["rand_spread"] == 0.1
    assert "kept_validation_ap50" not in figures
    with_ap50 = [header.replace("\tevent", "\tap50\tevent")]
    with_ap50 += [
        row[:-1] + f"\t{ap50}\t" for row, ap50 in zip(rows, (0.5, 0.9, 0.8, 0.9), strict=True)
    ]
    (tmp_path / "model/train_log.tsv").write_text("\n".join(with_ap50) + "\n")
    figures = recipe.figures_of(tmp_path, "v")
    assert (figures["kept_step"], figures["kept_validation_ap50"]) == (1000, 0.9)
    flagged = "1250\t0.9\t0.11\t0.10\t0.01\t5\t0.1\t2\trollback 1 of 3 at step 1250 to 750"
    (tmp_path / "model/train_log.tsv").write_text("\n".join([header, *rows, flagged]) + "\n")
    figures = recipe.figures_of(tmp_path, "v")
    assert (figures["kept_step"], figures["rollbacks"], figures["unhealed"]) == (750, 1, False)
    assert figures["fresh_starts"] == 0
    fresh = (
        "1500\t0.9\t0.11\t0.10\t0.01\t6\t0.1\t2\trollback 2 of 3 at step 1500 to a fresh start (a"
    )
    (tmp_path / "model/train_log.tsv").write_text("\n".join([header, *rows, flagged, fresh]) + "\n")
    figures = recipe.figures_of(tmp_path, "v")
    assert (figures["rollbacks"], figures["fresh_starts"]) == (2, 1)
    assert figures["leave_one_out_rand_error"] is None  # trained before the train step wrote it
    (tmp_path / "model/validation.json").write_text(
        json.dumps({"leave_one_slice_out": {"rand_error": 0.2345678, "steps": [750, 500]}})
    )
    assert recipe.figures_of(tmp_path, "v")["leave_one_out_rand_error"] == 0.234568
