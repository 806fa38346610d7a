"""`bench isbi-splits`: merges lower the Rand precision, splits the recall, and a run's last
weights come from its checkpoint."""

import numpy as np
import torch

from bench import splits
from unetseg import predict
from unetseg.unet import UNet


def two_cells() -> np.ndarray:
    """A 40 x 40 slice of two cells side by side, a 2-px membrane between them and around."""
    truth = np.zeros((1, 40, 40), bool)
    truth[0, 2:38, 2:19] = truth[0, 2:38, 21:38] = True
    return truth


def test_a_missing_membrane_is_a_merge_and_a_false_one_a_split():
    truth = two_cells()
    exact = splits.split_merge(truth, truth.astype(np.float32))
    assert exact["rand_error"] == 0 and exact["precision"] == exact["recall"] == 1

    merged = truth.astype(np.float32)
    merged[0, 10:30, 19:21] = 1  # the membrane between the cells broken over 20 px
    figures = splits.split_merge(truth, merged)
    assert figures["precision"] < 0.6 and figures["recall"] == 1 and figures["merger_px"] > 0

    split = truth.astype(np.float32)
    split[0, 19:21, 2:19] = 0  # a false membrane across the left cell
    figures = splits.split_merge(truth, split)
    assert figures["recall"] < 0.9 and figures["precision"] == 1 and figures["split_px"] > 0


def saved_run(folder, kept: UNet, last: UNet):
    """A finished run's kept model and its checkpoint of `last`'s weights at step 1000."""
    model_dir = folder / "results" / "model"
    model_dir.mkdir(parents=True)
    torch.save({"model_config": kept.config, "model_state": kept.state_dict(), "step": 250,
                "train_config": {"normalize": "unit"}}, model_dir / "model.pt")  # fmt: skip
    torch.save({"model_state": last.state_dict(), "step": 1000}, model_dir / "checkpoint.pt")
    return model_dir


def test_each_runs_last_model_has_its_checkpoints_weights(tmp_path):
    """Also for the second run: predict.load_model caches by path, so each run needs a file."""
    torch.manual_seed(0)
    kept, *lasts = (UNet(1, 2, depth=2, base_channels=4) for _ in range(3))
    model_dirs = [saved_run(tmp_path / f"run{i}-seed0", kept, last) for i, last in enumerate(lasts)]
    for model_dir, last in zip(model_dirs, lasts, strict=True):
        path = splits.last_model(model_dir / "model.pt", tmp_path)
        model, checkpoint = predict.load_model(str(path))
        assert checkpoint["step"] == 1000
        for name, weights in model.state_dict().items():
            assert torch.equal(weights, last.state_dict()[name])
    (model_dirs[0] / "checkpoint.pt").unlink()  # as the shipped model: no checkpoint beside it
    assert splits.last_model(model_dirs[0] / "model.pt", tmp_path) is None
