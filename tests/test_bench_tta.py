"""`bench isbi-tta-runs` and `isbi-tta-validations`: which models are predicted, on which
slices, which runs have a last step of their own, and which validations are compared."""

import torch

from bench import tta
from unetseg.unet import UNet


def saved_model(path, network, step, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_config": network.config, "model_state": network.state_dict(),
                "train_config": {"normalize": "unit"}, "step": step, **extra}, path)  # fmt: skip
    return path


def test_runs_hold_out_their_own_slices_and_a_twin_is_counted_once(tmp_path, monkeypatch):
    """The run that made the shipped model has its weights: it is predicted once."""
    torch.manual_seed(0)
    shipped = saved_model(tmp_path / "shipped.pt", UNet(1, 2, depth=1, base_channels=2), 10)
    twin = UNet(1, 2, depth=1, base_channels=2)
    twin.load_state_dict(torch.load(shipped, weights_only=True)["model_state"])
    rerun = tmp_path / "isbi_cpu_model/paper-seed0/results/model/model.pt"
    saved_model(rerun, twin, 10)
    other = tmp_path / "isbi_cpu_model/paper-seed1/results/model/model.pt"
    saved_model(other, UNet(1, 2, depth=1, base_channels=2), 10)
    fold = tmp_path / "isbi/group_ema-seed0/fold3/results/model/model.pt"
    saved_model(fold, UNet(1, 2, depth=1, base_channels=2), 10)
    monkeypatch.setattr(tta, "WORK", tmp_path)
    monkeypatch.setattr(tta, "SHIPPED", shipped)
    models = tta.held_out_models()
    assert models == [
        ("shipped", shipped, (16, 20), "kept"),
        ("paper-seed0", rerun, (16, 20), "kept"),
        ("paper-seed1", other, (16, 20), "kept"),
        ("group_ema-seed0/fold3", fold, (12, 16), "fold run"),
    ]
    assert tta.distinct(models) == [models[0], *models[2:]]


def test_a_run_has_its_own_last_step_unless_kept_there_or_averaged(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "paper-seed1/results/model"
    kept = saved_model(folder / "model.pt", UNet(1, 2, depth=1, base_channels=2), 750)
    last = UNet(1, 2, depth=1, base_channels=2).state_dict()
    checkpoint = {"step": 1000, "model_state": last, "average_state": None}
    torch.save(checkpoint, folder / "checkpoint.pt")
    assert tta.own_last_step(kept)
    torch.save({**checkpoint, "average_state": last}, folder / "checkpoint.pt")
    assert not tta.own_last_step(kept)  # the run kept averaged weights
    torch.save({**checkpoint, "step": 750}, folder / "checkpoint.pt")
    assert not tta.own_last_step(kept)  # the kept model is the last step


def test_validations_are_paired_only_while_the_runs_train_alike(tmp_path):
    """The tta run rolled back at step 750 and the plain one did not: from there the two
    validate different models and are no longer compared."""
    header = "step\tloss\tpixel_error\trand_error\tevent\n"
    plain = [(250, 1.5, 0.09, 0.37, ""), (500, 1.3, 0.11, 0.42, ""), (750, 1.1, 0.10, 0.40, "")]
    tta_ = [(250, 1.5, 0.08, 0.36, ""), (500, 1.3, 0.10, 0.43, ""), (750, 1.4, 0.05, 0.10, "x")]
    for name, rows in (("plain", plain), ("tta", tta_)):
        lines = ["\t".join(str(value) for value in row) for row in rows]
        (tmp_path / f"{name}.tsv").write_text(header + "\n".join(lines) + "\n")
    figures = tta.paired_validations(tmp_path / "plain.tsv", tmp_path / "tta.tsv")
    assert figures["steps_alike"] == 2 and figures["last_step_alike"] == 500
    assert figures["rand_error"]["lower_with_tta"] == 1
    assert figures["rand_error"]["mean_change"] == 0.0  # -0.01 and +0.01
    assert figures["rand_error"]["lowest_tta"] == 0.36  # step 750's 0.10 is not compared
    assert figures["pixel_error"]["lower_with_tta"] == 2
    halves = figures["rand_error_by_half"]  # the schedule ends at 750: its first half to 375
    assert halves["first"] == {"steps": 1, "lower_with_tta": 1, "mean_change": -0.01}
    assert halves["second"] == {"steps": 1, "lower_with_tta": 0, "mean_change": 0.01}
