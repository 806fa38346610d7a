import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TEST_DEVICE, TEST_PRECISIONS, write_tiff

from unetseg import UnetsegError, tiling
from unetseg.chunk import chunk_volume
from unetseg.samples import load_volume
from unetseg.train import TrainConfig, train, training_step
from unetseg.weights import compute_weights

TINY = dict(
    depth=2,
    base_channels=4,
    tile_out=20,
    validate_every=5,
    checkpoint_every=1000,
    device=TEST_DEVICE,
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, demo_arrays):
    folder = tmp_path_factory.mktemp("stores")
    raw, labels = demo_arrays
    write_tiff(folder / "raw.tif", raw)
    write_tiff(folder / "labels.tif", labels)
    paths = {}
    for role, slices in (("train", (0, 3)), ("val", (3, 4)), ("val_pair", (2, 4))):
        chunk_volume(folder / "raw.tif", folder / f"{role}_raw.zarr", slices=slices)
        chunk_volume(
            folder / "labels.tif", folder / f"{role}_labels.zarr", slices=slices, is_labels=True
        )
        paths[role] = [folder / f"{role}_raw.zarr", folder / f"{role}_labels.zarr"]
    compute_weights(folder / "train_labels.zarr", folder / "train_weights.zarr")
    paths["train"].append(folder / "train_weights.zarr")
    return paths


def run(stores, tmp_path, name, **overrides):
    config = TrainConfig(**{**TINY, **overrides})
    best = train(
        [load_volume(*stores["train"], config=config)],
        [load_volume(*stores["val"], config=config)],
        config,
        tmp_path / f"{name}.pt",
        tmp_path / f"{name}.tsv",
        tmp_path / f"{name}_checkpoint.pt",
    )
    return best, (tmp_path / f"{name}.tsv").read_text()


def states_equal(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_training_learns_and_keeps_the_best_model(stores, tmp_path):
    best, log = run(stores, tmp_path, "a", steps=60, learning_rate=0.02, validate_every=20)
    rows = [line.split("\t") for line in log.splitlines()]
    assert rows[0] == ["step", "loss", "pixel_error", "rand_error", "learning_rate", "seconds",
                       "rand_spread", "samples_per_s", "ap50", "wrong_fraction", "event"]  # fmt: skip
    assert [int(r[0]) for r in rows[1:]] == [20, 40, 60]
    assert float(rows[-1][1]) < float(rows[1][1])  # the loss goes down
    rand_errors = [float(r[3]) for r in rows[1:]]
    assert best["metrics"]["rand_error"] == min(rand_errors)
    saved = torch.load(tmp_path / "a.pt", weights_only=True)
    assert saved["step"] == best["step"] and saved["model_config"]["depth"] == 2


def test_training_gives_back_the_signal_handlers_it_found(stores, tmp_path):
    """SIGTERM checkpoints and stops a run (SLURM's preemption) only while it trains: a process
    that trained before (a test session, a notebook) stops on SIGTERM again afterwards."""
    before = [signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGUSR1)]
    run(stores, tmp_path, "handlers", steps=5)
    assert [signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGUSR1)] == before


def test_samples_augmented_where_auto_puts_them_train_the_same(stores, tmp_path):
    """train.augment_device auto: on the CPU the loader's path; on a GPU (UNETSEG_TEST_DEVICE=cuda,
    bench/gpu-check.sh) the device's, whose run learns from the same samples (within 1e-5) and
    so logs nearly the same losses as the CPU loader's."""
    _, on_cpu = run(stores, tmp_path, "cpu", steps=10, augment_device="cpu")
    _, auto = run(stores, tmp_path, "auto", steps=10, augment_device="auto")
    losses = [[float(row.split("\t")[1]) for row in log.splitlines()[1:]] for log in (on_cpu, auto)]
    assert np.allclose(losses[0], losses[1], rtol=1e-2), losses


def test_stop_after_ends_early_on_the_schedule_planned_over_all_steps(stores, tmp_path):
    config = TrainConfig(**{**TINY, "steps": 40, "validate_every": 5})
    volumes = [load_volume(*stores["train"], config=config)]
    train(volumes, [], config, tmp_path / "m.pt", tmp_path / "log.tsv", tmp_path / "c.pt",
          stop_after=10)  # fmt: skip
    rows = [line.split("\t") for line in (tmp_path / "log.tsv").read_text().splitlines()[1:]]
    assert [int(row[0]) for row in rows] == [5, 10]
    assert float(rows[-1][4]) == pytest.approx(0.01 * (1 - 9 / 40) ** 0.9)


@pytest.mark.parametrize("method", ["percentile", "percentile_per_slice", "unit"])
def test_volumes_are_normalised_as_configured_and_the_model_records_how(
    stores, tmp_path, demo_arrays, method
):
    """A 12-bit volume in uint16 whose slices grow brighter (+40 a slice): percentile maps its 1st
    and 99.8th percentiles to 0 and 1; percentile_per_slice those of each slice; unit divides by
    65535 (the release). The model keeps the method for prediction."""
    drift = 40 * np.arange(len(demo_arrays[0]), dtype=np.uint16)[:, None, None]
    twelve_bit = demo_arrays[0].astype(np.uint16) * 16 + drift
    chunk_volume(write_tiff(tmp_path / "raw.tif", twelve_bit), tmp_path / "raw.zarr")
    labels = write_tiff(tmp_path / "labels.tif", demo_arrays[1])
    chunk_volume(labels, tmp_path / "labels.zarr", is_labels=True)
    config = TrainConfig(**TINY, normalize=method)
    volume = load_volume(tmp_path / "raw.zarr", tmp_path / "labels.zarr", config=config)
    if method == "percentile":
        low, high = np.percentile(twelve_bit, [1.0, 99.8])
        expected = (twelve_bit - low) / (high - low)
    elif method == "percentile_per_slice":
        low, high = np.percentile(twelve_bit, [1.0, 99.8], axis=(1, 2), keepdims=True)
        expected = (twelve_bit - low) / (high - low)
    else:
        expected = twelve_bit / 65535
    image = np.stack([volume.image(z).whole() for z in range(volume.depth)])
    np.testing.assert_allclose(image, expected, rtol=1e-6, atol=1e-7)
    run(stores, tmp_path, "m", steps=2, normalize=method)
    saved = torch.load(tmp_path / "m.pt", weights_only=True)["train_config"]
    assert saved["normalize"] == method and saved["normalize_percentiles"] == [1.0, 99.8]


def test_a_network_with_one_output_everywhere_is_reported(stores, tmp_path, monkeypatch, caplog):
    """Silent features (here: a last layer of zero weights that a tiny learning rate cannot move)
    give one P at every pixel: each log row warns, with the input's range and what to change;
    a healthy network does not."""
    from unetseg.model import UNet

    reset = UNet.reset_parameters

    def silent_last_layer(model):
        reset(model)
        torch.nn.init.zeros_(model.head.weight)

    monkeypatch.setattr(UNet, "reset_parameters", silent_last_layer)
    with caplog.at_level("WARNING", logger="unetseg.train"):
        # The warnings alone: with rollbacks this run restarts (tests/test_rollback.py).
        run(stores, tmp_path, "silent", steps=10, learning_rate=1e-12, normalize="unit",
            max_rollbacks=0)  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if "stopped learning" in r.getMessage()]
    assert len(warnings) == 2  # steps 5 and 10
    collapsed = [r.getMessage() for r in caplog.records if "does not separate" in r.getMessage()]
    assert len(collapsed) == 2  # and on the validate volumes, at both log rows
    assert re.match(r"step 5: on the validate volumes the network scores no better than one "
                    r"probability at every pixel \(Rand error 0\.\d{4}, pixel error 0\.\d{4}, "
                    r"as if every pixel were cell interior\)", collapsed[0])  # fmt: skip
    assert re.match(r"step 5: the network gives P = 0\.500 at every pixel of this step's "
                    r"training tile: no unit before its last layer responds to it\. If this "
                    r"repeats, it has stopped learning\. Its input lies in "
                    r"\[-?[01]\.\d+, -?[01]\.\d+\] \(train\.normalize unit\)", warnings[0])  # fmt: skip
    caplog.clear()
    monkeypatch.setattr(UNet, "reset_parameters", reset)
    with caplog.at_level("WARNING", logger="unetseg.train"):  # 16 channels: TINY's 4 can fall
        run(stores, tmp_path, "live", steps=10, base_channels=16)  # silent on a tile for a while
    assert "stopped learning" not in caplog.text


def test_runs_are_reproducible_and_independent_of_loader_workers(stores, tmp_path):
    first, log_a = run(stores, tmp_path, "a", steps=6, workers=0)
    second, log_b = run(stores, tmp_path, "b", steps=6, workers=1)
    assert states_equal(first["model_state"], second["model_state"])
    assert [r.split("\t")[1] for r in log_a.splitlines()] == [
        r.split("\t")[1] for r in log_b.splitlines()
    ]


def test_invalid_tile_size_is_rejected(stores, tmp_path):
    with pytest.raises(UnetsegError, match="train.tile_out: 21 .* nearest valid: 20 or 24"):
        run(stores, tmp_path, "a", steps=2, tile_out=21)


@pytest.mark.parametrize(
    ("precision", "ema_decay"),
    [("fp32", 0.0), ("fp32", 0.99)] + ([("fp16", 0.0)] if TEST_DEVICE == "cuda" else []),
)
def test_sigterm_checkpoints_and_resume_equals_uninterrupted_run(
    stores, tmp_path, precision, ema_decay
):
    """fp16 (CUDA) also resumes its loss scale; on CUDA dropout draws from the device's RNG; the
    weight average and the rollback guard resume where they were."""
    steps = 300 if TEST_DEVICE == "cpu" else 3000  # a GPU runs 300 tiny steps in the 1 s below
    settings = json.dumps({**TINY, "steps": steps, "validate_every": 100, "learning_rate": 0.01,
                           "precision": precision, "ema_decay": ema_decay})  # fmt: skip

    def command(name):
        return [
            sys.executable, "-m", "unetseg", "train",
            "--raw", str(stores["train"][0]), "--labels", str(stores["train"][1]),
            "--weights", str(stores["train"][2]),
            "--val-raw", str(stores["val"][0]), "--val-labels", str(stores["val"][1]),
            "--settings", settings, "--model", str(tmp_path / f"{name}.pt"),
            "--log", str(tmp_path / f"{name}.tsv"), "--checkpoint", str(tmp_path / f"{name}.ckpt"),
            "--threads", "2",  # as the train rule runs it; intra-op threads must not break it
        ]  # fmt: skip

    uninterrupted = subprocess.run(command("whole"), capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    process = subprocess.Popen(command("split"), stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if f"training 0 -> {steps}" in line:
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    stopped_output = process.stderr.read()
    assert process.wait() == 1, stopped_output
    assert "stopped by a signal" in stopped_output
    checkpoint = torch.load(tmp_path / "split.ckpt", weights_only=False)
    assert 0 < checkpoint["step"] < steps
    assert not (tmp_path / "split.pt").exists()  # no final model from a stopped run

    resumed = subprocess.run(command("split"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {tmp_path / 'split.ckpt'} at step {checkpoint['step']}" in resumed.stderr
    whole = torch.load(tmp_path / "whole.pt", weights_only=True)
    split = torch.load(tmp_path / "split.pt", weights_only=True)
    assert states_equal(whole["model_state"], split["model_state"])
    assert whole["choice"] == split["choice"]  # every validation, the resumed run's included
    whole_log = np.loadtxt(tmp_path / "whole.tsv", skiprows=1, usecols=(0, 1, 2, 3))
    split_log = np.loadtxt(tmp_path / "split.tsv", skiprows=1, usecols=(0, 1, 2, 3))
    assert np.abs(whole_log - split_log).max() <= 1e-6


@pytest.mark.parametrize("precision", TEST_PRECISIONS)
def test_mixed_precision_training_step_with_channels_last(precision):
    """The mixed-precision path: bf16 autocast on CPU; fp16 with grad scaling or bf16 on CUDA."""
    from unetseg.model import UNet, prepare

    config = TrainConfig(**TINY, precision=precision, channels_last=True)
    device = torch.device(TEST_DEVICE)
    torch.manual_seed(0)
    model = prepare(UNet(depth=2, base_channels=4), device, channels_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    tile_in = tiling.input_size(20, 2)
    batch = (
        torch.rand(1, 1, tile_in, tile_in),
        torch.randint(0, 2, (1, 20, 20)),
        torch.ones(1, 20, 20),
    )
    before = [p.detach().clone() for p in model.parameters()]
    losses = [training_step(model, optimizer, scaler, batch, config, device, s) for s in range(3)]
    assert np.isfinite(losses).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def test_checkpoint_keeps_the_loss_scale(tmp_path):
    """fp16 training resumes with the loss scale it had reached (CPU GradScaler, same state)."""
    from unetseg.train import Run, resume, save_checkpoint

    config = TrainConfig(**TINY)
    run = Run.start(config, torch.device("cpu"), [])
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    run.scaler.scale(torch.ones(()))  # the scale tensor exists from the first scaled loss on
    run.scaler.update(new_scale=1024.0)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, config, run, 7, [], [], None)
    fresh = Run.start(config, torch.device("cpu"), [])
    fresh.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    state = resume(path, config, fresh)
    assert state["step"] == 7 and state["cuda_rng"] is None
    assert fresh.scaler.get_scale() == run.scaler.get_scale() == 1024.0


def test_loss_is_the_mean_over_annotated_pixels():
    from unetseg.train import weighted_cross_entropy

    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 6, 6), torch.randint(0, 2, (2, 6, 6))
    weights = torch.rand(2, 6, 6) + 1
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none") * weights
    assert torch.allclose(weighted_cross_entropy(logits, target, weights), per_pixel.mean())
    weights[:, :, 3:] = 0  # half of each tile not annotated
    expected = per_pixel[:, :, :3].mean()
    assert torch.allclose(weighted_cross_entropy(logits, target, weights), expected)
    assert weighted_cross_entropy(logits, target, torch.zeros(2, 6, 6)).item() == 0.0


def test_sparse_validation_labels_are_refused(stores, tmp_path, capsys):
    from unetseg.cli import main

    sparse = np.zeros((1, 32, 32), np.uint8)
    sparse[0, :16] = 1
    sparse[0, 16:, :8] = 5
    write_tiff(tmp_path / "val_labels.tif", sparse)
    chunk_volume(tmp_path / "val_labels.tif", tmp_path / "val_labels.zarr", is_labels=True,
                 ignore_label=5)  # fmt: skip
    (train_raw, train_labels, train_weights), (val_raw, _) = stores["train"], stores["val"]
    arguments = {
        "raw": train_raw, "labels": train_labels, "weights": train_weights, "val-raw": val_raw,
        "val-labels": tmp_path / "val_labels.zarr", "settings": "{}",
        "checkpoint": tmp_path / "c.pt", "model": tmp_path / "m.pt", "log": tmp_path / "log.tsv",
    }  # fmt: skip
    assert main(["train", *(f"--{key}={value}" for key, value in arguments.items())]) == 1
    error = capsys.readouterr().err
    assert "val_labels.zarr: sparse labels (ignore_label 5); the ISBI metrics need every" in error
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_gradient_norm_is_clipped_as_configured(clip):
    """The first SGD step moves the parameters by lr x the gradient: by at most lr x clip when
    clipped, far more for this loss weighted 1000x when not."""
    from unetseg.model import UNet

    config = TrainConfig(**TINY, grad_clip_norm=clip, learning_rate=0.1, lr_decay="constant")
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.99)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    tile_in = tiling.input_size(20, 2)
    batch = (torch.rand(1, 1, tile_in, tile_in), torch.randint(0, 2, (1, 20, 20)),
             torch.full((1, 20, 20), 1000.0))  # fmt: skip
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    training_step(model, optimizer, scaler, batch, config, torch.device("cpu"), 0)
    moved = (torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm().item()
    if clip:
        assert moved == pytest.approx(0.1 * clip, rel=1e-3)
    else:
        assert moved > 10 * 0.1


def test_learning_rate_warms_up_linearly_then_decays():
    from unetseg.train import learning_rate

    config = TrainConfig(learning_rate=0.01, steps=1000, warmup_steps=100, lr_decay="constant")
    rates = [learning_rate(config, step) for step in (0, 49, 99, 100, 999)]
    assert rates == pytest.approx([0.0001, 0.005, 0.01, 0.01, 0.01])
    poly = TrainConfig(learning_rate=0.01, steps=1000, warmup_steps=100)
    assert learning_rate(poly, 49) == pytest.approx(0.005 * (1 - 49 / 1000) ** 0.9)
    assert learning_rate(poly, 500) == pytest.approx(0.01 * 0.5**0.9)
    assert learning_rate(TrainConfig(learning_rate=0.01, steps=1000), 0) == pytest.approx(0.01)


@pytest.mark.parametrize(("clip", "remedy"), [(0.0, "set train.grad_clip_norm (1.0), lower"),
                                              (1.0, "; lower train.learning_rate or set train.warmup_steps (500)")])  # fmt: skip
def test_a_diverged_loss_stops_training_with_what_to_change(clip, remedy):
    from unetseg.model import UNet

    model = UNet(depth=2, base_channels=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    tile_in = tiling.input_size(20, 2)
    batch = (torch.full((1, 1, tile_in, tile_in), float("nan")), torch.zeros(1, 20, 20).long(),
             torch.ones(1, 20, 20))  # fmt: skip
    config = TrainConfig(**TINY, grad_clip_norm=clip)
    with pytest.raises(
        UnetsegError, match=f"train: loss became nan at step 3.*{re.escape(remedy)}"
    ):
        training_step(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), batch, config,
                      torch.device("cpu"), 3)  # fmt: skip


def test_validation_no_better_than_a_constant_prediction_is_reported(demo_arrays, caplog):
    """The constant prediction's errors are those of calling every pixel interior; a network
    that scores them warns, one a little better does not."""
    from unetseg import evaluate
    from unetseg.rollback import constant_errors
    from unetseg.samples import Volume
    from unetseg.train import warn_if_no_better_than_constant
    from unetseg.validation import truths as validation_truths

    _, label_volume = demo_arrays
    truth = (label_volume > 0).astype(np.uint8)
    constant = constant_errors(validation_truths([Volume(truth.astype(np.float32), truth)]))
    everything = np.ones(truth[0].shape, np.float32)
    rand = sum(evaluate.rand_counts(t, everything, [0.0])[0] for t in truth)
    assert constant["rand_error"] == pytest.approx(1 - evaluate.best_f(rand)[0])
    assert constant["pixel_error"] == pytest.approx(1 - 2 * truth.mean() / (1 + truth.mean()))
    config = TrainConfig(**TINY)
    with caplog.at_level("WARNING", logger="unetseg.train"):
        warn_if_no_better_than_constant(dict(constant), constant, config, 7)
        better = {key: value - 0.01 for key, value in constant.items()}
        warn_if_no_better_than_constant(better, constant, config, 8)
    assert [r.getMessage()[:7] for r in caplog.records] == ["step 7:"]


def scored_as_predicted(stores, tmp_path, name, **predict_options):
    """The validate volume and the held-out errors of model `name` as the workflow gives them:
    predict_volume (52-px tiles, 64-px blocks, with `predict_options`), then evaluate."""
    import zarr

    from unetseg import evaluate
    from unetseg.predict import predict_volume
    from unetseg.validation import truths as validation_truths

    probability = tmp_path / f"{name}.zarr"
    predict_volume(tmp_path / f"{name}.pt", stores["val"][0], probability, 52, block_px=64,
                   out_dtype="float32", **predict_options)  # fmt: skip
    val = load_volume(*stores["val"], config=TrainConfig(**TINY))
    truth = np.stack(validation_truths([val]))
    return val, evaluate.headline(evaluate.evaluate_arrays(truth, zarr.open(probability)["0"]))


def test_a_groupnorm_networks_kept_validation_errors_are_those_the_predict_step_gives(
    stores, tmp_path
):
    """GroupNorm normalises each tile by its own statistics, so validation cuts slices as the
    predict step does (its tile_out and block_px, passed by the rule): the kept model's
    validation errors are then the workflow's own held-out errors of that model, while the
    training tile's would not be."""
    from unetseg.predict import load_model
    from unetseg.validation import validate

    cut = dict(validate_tile_out=52, validate_block_px=64)
    best, _ = run(stores, tmp_path, "g", norm="group", steps=40, validate_every=20, **cut)
    val, scored = scored_as_predicted(stores, tmp_path, "g")
    assert best["metrics"]["rand_error"] == pytest.approx(scored["rand_error"], abs=1e-6)
    assert best["metrics"]["pixel_error"] == pytest.approx(scored["pixel_error"], abs=1e-6)

    kept, _ = load_model(str(tmp_path / "g.pt"), "cpu")
    cpu = torch.device("cpu")
    as_predicted = validate(kept, [val], TrainConfig(**{**TINY, "norm": "group", **cut}), cpu)
    assert as_predicted["rand_error"] == pytest.approx(scored["rand_error"], abs=1e-6)
    training_tile = validate(kept, [val], TrainConfig(**{**TINY, "norm": "group"}), cpu)
    assert training_tile["rand_error"] != pytest.approx(scored["rand_error"], abs=1e-3)


def test_with_tta_the_kept_validation_errors_are_those_the_predict_step_gives(stores, tmp_path):
    """Where predict.tta averages the 8 orientations (the rule then sets validate_tta),
    validation averages them too: the kept model's validation errors are the workflow's own
    held-out errors of that model, while a plain validation's are not."""
    from unetseg.predict import load_model
    from unetseg.validation import validate

    best, _ = run(stores, tmp_path, "t", steps=40, validate_every=20, validate_tta=True)
    val, scored = scored_as_predicted(stores, tmp_path, "t", tta=True)
    assert best["metrics"]["rand_error"] == pytest.approx(scored["rand_error"], abs=1e-6)
    assert best["metrics"]["pixel_error"] == pytest.approx(scored["pixel_error"], abs=1e-6)

    kept, _ = load_model(str(tmp_path / "t.pt"), "cpu")
    plain = validate(kept, [val], TrainConfig(**TINY), torch.device("cpu"))
    assert plain["pixel_error"] != pytest.approx(scored["pixel_error"], abs=1e-4)


def test_a_run_kept_by_ap50_logs_it_and_keeps_its_highest(stores, tmp_path):
    best, log = run(stores, tmp_path, "ap", norm="group", steps=40, validate_every=10,
                    keep_by="ap50")  # fmt: skip
    rows = [dict(zip(log.splitlines()[0].split("\t"), line.split("\t"), strict=True))
            for line in log.splitlines()[1:]]  # fmt: skip
    ap50 = [float(row["ap50"]) for row in rows]
    assert all(0 <= value <= 1 for value in ap50) and max(ap50) > 0.01
    last_highest = max(range(len(rows)), key=lambda k: (ap50[k], k))
    assert best["step"] == int(rows[last_highest]["step"])
    assert best["metrics"]["ap50"] == ap50[last_highest]
    with pytest.raises(UnetsegError, match="train.keep_by: 'dice' is not one of rand_error, ap50"):
        run(stores, tmp_path, "bad", steps=1, keep_by="dice")


def test_the_choice_is_scored_on_each_slice_by_the_network_the_others_chose(stores, tmp_path):
    """The model file and --validation-summary say what the kept validation is worth: each
    validation slice scored by the network the other one chose, as a run validated on that other
    slice alone keeps (the same training: validation changes no weight)."""
    from unetseg.cli import main

    config = TrainConfig(**{**TINY, "steps": 60, "learning_rate": 0.02, "norm": "group"})
    volumes = [load_volume(*stores["train"], config=config)]

    def run_validated_on(val_raw, val_labels, z=None, name="pair"):
        val = load_volume(val_raw, val_labels, config=config)
        if z is not None:  # one slice of the pair, in memory
            val = replace(val, raw=val.raw[z : z + 1], labels=val.labels[z : z + 1],
                          grey_mappings=val.grey_mappings[z : z + 1])  # fmt: skip
        return train(volumes, [val], config, tmp_path / f"{name}.pt", tmp_path / f"{name}.tsv",
                     tmp_path / f"{name}.ckpt", validation_path=tmp_path / f"{name}.json")  # fmt: skip

    best = run_validated_on(*stores["val_pair"])
    summary = best["choice"]
    assert summary == json.loads((tmp_path / "pair.json").read_text())
    assert summary == torch.load(tmp_path / "pair.pt", weights_only=True)["choice"]
    assert summary["slices"] == ["val_pair_labels.zarr z0", "val_pair_labels.zarr z1"]
    assert summary["validations"] == 12
    assert summary["kept"]["step"] == best["step"]
    assert summary["kept"]["rand_error"] == best["metrics"]["rand_error"]
    estimate = summary["leave_one_slice_out"]
    for z, other in ((0, 1), (1, 0)):
        alone = run_validated_on(*stores["val_pair"], z=other, name=f"z{other}")
        assert estimate["steps"][z] == alone["step"]
    assert summary["flattery"]["rand_error"] == pytest.approx(
        estimate["rand_error"] - summary["kept"]["rand_error"], abs=1e-6
    )
    assert main(["train", "--raw", *map(str, stores["train"][:1]), "--labels",
                 str(stores["train"][1]), "--weights", str(stores["train"][2]),
                 "--settings", json.dumps({**TINY, "steps": 5}), "--model", str(tmp_path / "m.pt"),
                 "--log", str(tmp_path / "m.tsv"), "--checkpoint", str(tmp_path / "m.ckpt"),
                 "--validation-summary", str(tmp_path / "m.json")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "m.json").read_text())["slices"] == []  # no validate volume


def test_the_kept_model_is_chosen_by_the_figure_keep_by_names():
    from unetseg.train import at_least_as_good

    kept = {"metrics": {"rand_error": 0.2, "pixel_error": 0.1, "ap50": 0.6}}
    sharper = {"rand_error": 0.3, "pixel_error": 0.1, "ap50": 0.7}  # more cells, worse Rand
    assert not at_least_as_good(sharper, kept, "rand_error")
    assert at_least_as_good(sharper, kept, "ap50")
    assert at_least_as_good({**kept["metrics"]}, kept, "ap50")  # a tie: the later model
    assert at_least_as_good(sharper, None, "rand_error") and at_least_as_good({}, kept, "ap50")
