"""`bench isbi-ensemble`: its members are the shipped model and the recorded whole-schedule runs
on the config's split, and a held-out prediction is the workflow's (one tile a slice)."""

import numpy as np
import torch

from bench import ensemble
from unetseg import predict
from unetseg.unet import UNet


def test_the_members_are_the_shipped_model_and_the_named_runs_that_finished(tmp_path, monkeypatch):
    """A run finished since the figure was recorded (paper_lr0.005) does not join it."""
    for run in ("ema-seed0", "paper_bf16_10k-seed0", "paper_lr0.005-seed0"):
        (tmp_path / "isbi_cpu_model" / run / "results/model").mkdir(parents=True)
        (tmp_path / "isbi_cpu_model" / run / "results/model/model.pt").touch()
    monkeypatch.setattr(ensemble, "WORK", tmp_path)
    found = ensemble.members()
    assert list(found) == ["shipped", "ema-seed0", "paper_bf16_10k-seed0"]
    assert found["shipped"].exists()
    (tmp_path / "isbi_cpu_model/ema-seed0/results/model/model.pt").unlink()  # not finished
    assert list(ensemble.members()) == ["shipped", "paper_bf16_10k-seed0"]


def test_a_held_out_prediction_is_the_whole_slice_one(tmp_path, monkeypatch):
    """The paper's network (no normalisation layers) predicts a slice in one 516-px tile as
    in one pass over the whole slice."""
    torch.manual_seed(0)
    network = UNet(1, 2, depth=2, base_channels=4)
    path = tmp_path / "model.pt"
    torch.save({"model_config": network.config, "model_state": network.state_dict(),
                "train_config": {"normalize": "unit"}}, path)  # fmt: skip
    monkeypatch.setattr(ensemble, "TILE_OUT", 36)
    raw = np.random.default_rng(0).integers(0, 255, (2, 40, 40), dtype=np.uint8)
    probability = ensemble.held_out_probability(path, raw)
    mappings = predict.model_grey_mappings(raw, {"train_config": {"normalize": "unit"}})
    model, _ = predict.load_model(str(path))
    whole = predict.predict_whole_slice(model, raw[1], grey_mapping=mappings[1])
    assert probability.shape == (2, 40, 40) and probability.dtype == np.float32
    np.testing.assert_allclose(probability[1], whole, atol=1e-5)
