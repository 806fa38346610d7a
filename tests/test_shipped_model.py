"""The trained ISBI 2012 model shipped under models/: loadable, small, and as good as recorded."""

import json

import numpy as np
import pytest
import tifffile
import yaml
from conftest import ISBI, REPO

from unetseg import evaluate
from unetseg.predict import load_model, predict_block

SHIPPED = REPO / "models/isbi2012-cpu-16ch"


def test_shipped_model_is_small_and_matches_its_config_overlay():
    model_file = SHIPPED / "model.pt"
    assert model_file.stat().st_size < 40 * 2**20
    model, checkpoint = load_model(str(model_file))
    overlay = yaml.safe_load((REPO / "config/isbi2012-pretrained.yaml").read_text())
    assert overlay["model"]["pretrained"] == str(model_file.relative_to(REPO))
    for key in ("depth", "base_channels"):
        assert model.config[key] == overlay["model"].get(key, 4 if key == "depth" else None)


def test_shipped_model_reproduces_its_recorded_validation_errors():
    if not (ISBI / "train-volume.tif").exists():
        pytest.skip(f"ISBI 2012 data not found at {ISBI}")
    recorded = json.loads((SHIPPED / "metrics.json").read_text())
    model, _ = load_model(str(SHIPPED / "model.pt"))
    raw = tifffile.imread(ISBI / "train-volume.tif")[16:20]
    truth = tifffile.imread(ISBI / "train-labels.tif")[16:20]
    probability = np.stack(
        [predict_block(model, raw, z, (0, 512), (0, 512), 388) for z in range(len(raw))]
    )
    measured = evaluate.headline(evaluate.evaluate_arrays(truth, probability, workers=2))
    # The workflow stored float16 probabilities; here they stay float32: tiny differences.
    for key in ("pixel_error", "rand_error"):
        assert measured[key] == pytest.approx(recorded[key], abs=2e-3), key
    assert measured["warping_error"] == pytest.approx(recorded["warping_error"], abs=5e-4)
