"""`bench isbi-selection`: a network chosen on some held-out slices and scored on the others."""

import numpy as np
import pytest

from bench import selection
from unetseg import evaluate


def counts(tp: int, fp: int) -> dict:
    """One slice's counts with the same TP, FP (and no FN) at every threshold."""
    f_counts = np.tile([tp, fp, 0], (len(evaluate.PIXEL_RAND_THRESHOLDS), 1))
    return {"pixel": f_counts.tolist(), "rand_n2": f_counts.tolist(),
            "rand_pairs": f_counts.tolist(),
            "warping": np.zeros((len(evaluate.WARPING_THRESHOLDS), 2)).tolist()}  # fmt: skip


GOOD, POOR, FAIR = counts(100, 0), counts(50, 50), counts(100, 10)
# step 250 is good on slices 16 and 17, step 500 on 18 and 19 (a little less so)
SCORED = {250: [GOOD, GOOD, POOR, POOR], 500: [POOR, POOR, FAIR, FAIR]}


def rand_error(tp: int, fp: int) -> float:
    return 1 - 2 * tp / (2 * tp + fp)


def test_the_network_chosen_has_the_lowest_rand_error_on_the_choosing_slices():
    assert selection.chosen(SCORED, (0, 1, 2, 3)) == 250  # F 0.857 against 0.833
    assert selection.chosen(SCORED, (0, 1)) == 250
    assert selection.chosen(SCORED, (2, 3)) == 500


def test_of_equal_networks_the_later_is_chosen_as_training_keeps_it():
    assert selection.chosen({250: [GOOD], 500: [GOOD], 750: [POOR]}, (0,)) == 500


def test_each_slice_left_out_is_scored_by_the_network_the_other_three_chose():
    result = selection.analyse(SCORED, kept_step=250)
    assert result["chosen_on_all"]["step"] == 250
    assert result["chosen_on_all"]["rand_error"] == pytest.approx(rand_error(300, 100))
    # each slice's own network is outvoted by the other three: every slice gets the poor one
    assert result["leave_one_out"]["steps"] == [500, 500, 250, 250]
    assert result["leave_one_out"]["rand_error"] == pytest.approx(rand_error(200, 200))
    assert result["last_step"]["step"] == 500
    assert result["kept_by_training"]["rand_error"] == result["chosen_on_all"]["rand_error"]


def test_two_slices_choose_and_the_other_two_score():
    splits = {tuple(s["choosing_slices"]): s for s in selection.analyse(SCORED, 250)[
        "two_slice_splits"]}  # fmt: skip
    assert len(splits) == 6
    chose_16_17 = splits[(16, 17)]  # step 250, scored on 18 and 19, where it is poor
    assert chose_16_17["step"] == 250
    assert chose_16_17["rand_error"] == pytest.approx(rand_error(100, 100))
    assert chose_16_17["rand_error_chosen_on_all"] == pytest.approx(rand_error(100, 100))
    chose_18_19 = splits[(18, 19)]  # step 500, scored on 16 and 17, where it is poor
    assert chose_18_19["step"] == 500
    assert chose_18_19["rand_error"] == pytest.approx(rand_error(100, 100))
    assert chose_18_19["rand_error_chosen_on_all"] == pytest.approx(rand_error(200, 0))


def test_an_average_of_networks_is_the_mean_of_their_weights(tmp_path):
    import torch

    from unetseg.unet import UNet

    paths = []
    for step, value in ((250, 1.0), (500, 3.0)):
        network = UNet(in_channels=1, n_classes=2, depth=2, base_channels=2)
        state = {
            key: torch.full_like(tensor, value) for key, tensor in network.state_dict().items()
        }
        paths.append(tmp_path / f"{step}.pt")
        torch.save({"model_config": network.config, "model_state": state, "step": step}, paths[-1])
    selection.averaged_model(paths, tmp_path / "average.pt")
    average = torch.load(tmp_path / "average.pt", weights_only=True)
    assert average["averaged_steps"] == [250, 500] and average["step"] == 500
    assert all(torch.all(tensor == 2.0) for tensor in average["model_state"].values())
    network = UNet(**average["model_config"])
    network.load_state_dict(average["model_state"])  # a model file predict loads


def test_the_workflows_train_command_runs_with_every_validated_network_saved(
    finished_run, tmp_path
):
    """The hook on training's validation (bench/selection.py) sees each validation: a snapshot per
    log row, scored as the row says."""
    import contextlib

    import torch
    from conftest import snakemake_command

    workdir, _ = finished_run
    command, _ = snakemake_command(workdir)
    argv = selection.rule_command(workdir, command, "train", "results/model/model.pt")
    for option in ("--model", "--log", "--checkpoint", "--validation-summary"):
        argv[argv.index(option) + 1] = str(tmp_path / option.strip("-"))  # not the run's files
    with contextlib.chdir(workdir):
        selection.train_keeping_every_validation(argv, tmp_path / "validated")
    rows = [line.split("\t") for line in (tmp_path / "log").read_text().splitlines()[1:]]
    snapshots = sorted((tmp_path / "validated").glob("*.pt"))
    assert [path.name for path in snapshots] == [f"{int(row[0]):06d}.pt" for row in rows]
    for path, row in zip(snapshots, rows, strict=True):
        metrics = torch.load(path, weights_only=True)["metrics"]
        assert metrics["rand_error"] == float(row[3])
