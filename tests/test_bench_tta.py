"""`bench isbi-tta-runs`: which models it predicts, on which slices, and the last step it
rebuilds from a run's checkpoint."""

import torch

from bench import tta
from unetseg.unet import UNet


def saved_model(path, network, step, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_config": network.config, "model_state": network.state_dict(),
                "train_config": {"normalize": "unit"}, "step": step, **extra}, path)  # fmt: skip
    return path


def test_runs_hold_out_their_own_slices_and_the_shipped_twin_is_left_out(tmp_path, monkeypatch):
    torch.manual_seed(0)
    shipped = saved_model(tmp_path / "shipped.pt", UNet(1, 2, depth=1, base_channels=2), 10)
    twin = UNet(1, 2, depth=1, base_channels=2)
    twin.load_state_dict(torch.load(shipped, weights_only=True)["model_state"])
    saved_model(tmp_path / "isbi_cpu_model/paper-seed0/results/model/model.pt", twin, 10)
    other = tmp_path / "isbi_cpu_model/paper-seed1/results/model/model.pt"
    saved_model(other, UNet(1, 2, depth=1, base_channels=2), 10)
    fold = tmp_path / "isbi/group_ema-seed0/fold3/results/model/model.pt"
    saved_model(fold, UNet(1, 2, depth=1, base_channels=2), 10)
    monkeypatch.setattr(tta, "WORK", tmp_path)
    monkeypatch.setattr(tta, "SHIPPED", shipped)
    assert tta.held_out_models() == [
        ("shipped", shipped, (16, 20)),
        ("paper-seed1", other, (16, 20)),
        ("group_ema-seed0/fold3", fold, (12, 16)),
    ]


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
