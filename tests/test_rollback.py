import logging

import numpy as np
import pytest
import torch
from conftest import TEST_DEVICE, write_tiff

from unetseg import evaluate
from unetseg.chunk import chunk_volume
from unetseg.data import demo_volume
from unetseg.rollback import CollapseGuard, Rollbacks, constant_errors
from unetseg.samples import load_volume
from unetseg.train import Run, TrainConfig, learning_rate, model_file, train
from unetseg.weights import compute_weights


def test_the_best_constant_prediction_is_taken_per_error_from_either_class():
    """Few cells: by the share of wrong pixels calling everything background is best; by the
    ISBI errors calling everything interior is (background scores F = 0 there)."""
    truth = np.zeros((2, 20, 20), np.uint8)
    truth[0, 2:6, 2:6] = 1
    truth[1, 10:15, 3:8] = 1
    interior = truth.mean()
    constant = constant_errors(list(truth))
    assert constant["wrong_fraction"] == pytest.approx(interior)
    assert constant["pixel_error"] == pytest.approx(1 - 2 * interior / (1 + interior))
    everything = np.ones((20, 20), np.float32)
    rand = sum(evaluate.rand_counts(t, everything, [0.0])[0] for t in truth)
    assert constant["rand_error"] == pytest.approx(1 - evaluate.best_f(rand)[0])


CONSTANT = {"pixel_error": 0.5, "rand_error": 0.9, "wrong_fraction": 0.2}


def healthy(rand_error: float, wrong: float = 0.05) -> dict:
    return {"pixel_error": 0.1, "rand_error": rand_error, "wrong_fraction": wrong}


def test_a_validation_no_better_than_a_constant_is_bad_once_the_run_was_better():
    guard = CollapseGuard(dict(CONSTANT))
    assert guard.verdict({**healthy(0.95), "wrong_fraction": 0.3}, 1.0) is None  # not learned yet
    assert guard.verdict(healthy(0.3), 0.9) is None
    assert guard.verdict({**healthy(0.3), "wrong_fraction": 0.25}, 0.8) is None  # watched
    assert guard.suspect.startswith("validation wrong_fraction 0.2500 is no better than a constant")
    reason = guard.verdict({**healthy(0.3), "wrong_fraction": 0.24}, 0.8)
    assert reason.startswith("validation wrong_fraction 0.2400 is no better than a constant")
    assert "; the validation before: validation wrong_fraction 0.2500" in reason
    assert guard.suspect is None


def test_one_bad_validation_is_watched_and_forgotten_when_the_next_is_good():
    guard = CollapseGuard(dict(CONSTANT))
    assert guard.verdict(healthy(0.3), 0.9) is None
    assert guard.verdict(healthy(0.8), 0.9) is None and guard.suspect.startswith("validation rand")
    assert guard.best["rand_error"] == 0.3  # a watched row is not remembered as healthy
    assert guard.verdict(healthy(0.35), 0.9) is None and guard.suspect is None
    assert guard.verdict(healthy(0.8), 0.9) is None  # watched afresh, not a second in a row
    assert guard.verdict(healthy(0.85), 0.9).startswith("validation rand_error rose to 0.8500")


def test_a_watched_validation_is_resumed_from_a_checkpoint():
    guard = CollapseGuard(dict(CONSTANT))
    guard.verdict(healthy(0.3), 0.9)
    guard.verdict(healthy(0.8), 0.9)
    resumed = CollapseGuard(dict(CONSTANT))
    resumed.load_state_dict(guard.state_dict())
    assert resumed.suspect == guard.suspect and resumed.best == guard.best
    assert resumed.verdict(healthy(0.8), 0.9).startswith("validation rand_error rose to 0.8000")
    older = {key: value for key, value in guard.state_dict().items() if key != "suspect"}
    resumed.load_state_dict(older)  # a checkpoint from before the guard watched
    assert resumed.suspect is None


def test_a_bad_validation_with_a_clear_new_best_of_another_error_is_still_learning():
    for wrong, watched in ((0.095, True), (0.08, False)):  # MARGIN 0.01 below the best 0.1
        guard = CollapseGuard(dict(CONSTANT))
        assert guard.verdict(healthy(0.3, wrong=0.1), 0.9) is None
        assert guard.verdict(healthy(0.8, wrong=wrong), 0.9) is None
        assert (guard.suspect is not None) == watched
    assert guard.best == {"pixel_error": 0.1, "rand_error": 0.3, "wrong_fraction": 0.08}


# The validations of ISBI 2012 runs of the CPU overlay (config/isbi2012-cpu.yaml: the paper's
# network at 16 channels, rate 0.01, fp32) without rollbacks, steps 250-1250 (`python -m bench
# isbi-early-validations`): pixel error, Rand error, share of wrong pixels, mean loss. Seed 0 is
# the run of the model shipped until 2026-12-07 to the digit (models/isbi2012-cpu-16ch/
# train_log.tsv at 2651ba6; it went on to the kept Rand error 0.1105); a guard that judged one
# validation rolled it back at step 500 and halved its rate for good.
ISBI_CONSTANT = {"pixel_error": 0.1178783, "rand_error": 0.9060927, "wrong_fraction": 0.2108965}
ISBI_SEED_0 = [(0.11787, 0.35302, 0.18541, 2.1141), (0.11788, 0.70907, 0.21090, 1.2410),
               (0.10000, 0.65039, 0.15926, 1.4098), (0.10180, 0.38522, 0.16053, 1.2493),
               (0.08989, 0.37725, 0.14481, 1.0753)]  # fmt: skip
# Seed 1 stalls: its pixel error the constant's from step 500 on (its Rand error 0.0002 below
# the best at step 500 is noise); a guard that judged one validation rolled it back at step 500.
ISBI_SEED_1 = [(0.10465, 0.35246, 0.16625, 1.6242), (0.11788, 0.35221, 0.19328, 1.3850),
               (0.11788, 0.42520, 0.21090, 1.3022), (0.11788, 0.39298, 0.18869, 1.2187),
               (0.11788, 0.38239, 0.17993, 1.1830)]  # fmt: skip


def test_the_early_spike_of_the_shipped_isbi_run_is_watched_not_rolled_back():
    guard = CollapseGuard(dict(ISBI_CONSTANT))
    suspects = []
    for pixel, rand, wrong, loss in ISBI_SEED_0:
        metrics = {"pixel_error": pixel, "rand_error": rand, "wrong_fraction": wrong}
        assert guard.verdict(metrics, loss) is None
        suspects.append(guard.suspect is not None)
    assert suspects == [False, True, False, False, False]


def test_the_stall_of_seed_1_is_rolled_back_at_its_second_bad_validation():
    guard = CollapseGuard(dict(ISBI_CONSTANT))
    verdicts = []
    for pixel, rand, wrong, loss in ISBI_SEED_1[:3]:
        metrics = {"pixel_error": pixel, "rand_error": rand, "wrong_fraction": wrong}
        verdicts.append(guard.verdict(metrics, loss))
    assert verdicts[:2] == [None, None] and guard.suspect is None
    assert verdicts[2].startswith("validation pixel_error 0.1179 is no better than a constant")
    assert "; the validation before: validation pixel_error 0.1179 is no better" in verdicts[2]


def test_an_error_equal_to_the_constant_but_for_float_noise_was_never_better():
    """ISBI seed 3: a pixel error of 0.1179 at step 250, the constant's but for the last bits of
    its float sums, then the same at step 500 while the Rand error improved: no verdict."""
    guard = CollapseGuard(dict(CONSTANT))
    at_constant = {**healthy(0.4), "pixel_error": CONSTANT["pixel_error"] - 2e-5}
    assert guard.verdict(at_constant, 1.0) is None
    assert guard.verdict({**at_constant, "rand_error": 0.33}, 0.9) is None


def test_a_silent_network_no_better_than_a_constant_is_bad_from_the_start():
    guard = CollapseGuard(dict(CONSTANT))
    assert guard.verdict(healthy(0.9), 1.0, silent=False) is None
    reason = guard.verdict(healthy(0.9), 1.0, silent=True)
    assert "rand_error 0.9000 is no better" in reason and "one output at every pixel" in reason


def test_a_rise_more_than_halfway_back_to_the_constant_is_bad_a_smaller_swing_is_not():
    guard = CollapseGuard(dict(CONSTANT))
    assert guard.verdict(healthy(0.1), 1.0) is None
    assert guard.verdict(healthy(0.49), 1.0) is None  # halfway from 0.1 to 0.9 is 0.5
    assert guard.suspect is None
    assert guard.verdict(healthy(0.51), 1.0) is None
    rise = (
        "validation rand_error rose to {:.4f} from its best 0.1000, more than halfway to a "
        "constant prediction's 0.9000"
    )
    assert guard.suspect == rise.format(0.51)
    reason = guard.verdict(healthy(0.52), 1.0)
    assert reason == f"{rise.format(0.52)}; the validation before: {rise.format(0.51)}"


def test_a_network_stuck_at_the_constant_pixel_error_is_bad_while_its_rand_error_holds():
    """The bf16 10000-step ISBI run judged by the Rand error alone (8d99637): from step 1500 its
    pixel error stayed the constant's (0.1179) for 3750 steps at Rand 0.36-0.50; its guarded run
    was rolled back at step 1250 (a rise more than halfway there) and reached Rand 0.12-0.15."""
    guard = CollapseGuard(
        {"pixel_error": 0.1178783, "rand_error": 0.9060927, "wrong_fraction": 0.2135}
    )
    for pixel, rand, loss in [(0.1044, 0.4966, 2.279), (0.1013, 0.3819, 1.595),
                              (0.0919, 0.3537, 1.261), (0.0906, 0.3651, 1.126)]:  # fmt: skip
        assert guard.verdict({**healthy(rand), "pixel_error": pixel}, loss) is None
    assert guard.verdict({**healthy(0.3953), "pixel_error": 0.1125}, 1.189) is None  # watched
    assert guard.suspect.startswith("validation pixel_error rose to 0.1125 from its best 0.0906")
    stuck = guard.verdict({**healthy(0.4275), "pixel_error": 0.1178783}, 1.19)
    assert stuck.startswith("validation pixel_error 0.1179 is no better than a constant")


def test_a_loss_rising_three_rows_in_a_row_far_above_its_lowest_is_bad():
    guard = CollapseGuard(None)  # no validate volumes: the loss alone is watched
    for loss in (1.0, 0.9, 1.0, 1.1):
        assert guard.verdict({}, loss) is None
    assert guard.verdict({}, 1.15) is None  # 3 rises, but 1.28x the lowest
    guard = CollapseGuard(None)
    for loss in (1.0, 0.9, 1.0, 1.1):
        guard.verdict({}, loss)
    assert guard.verdict({}, 1.2).startswith("the mean loss rose at 3 log rows in a row")


def test_each_rollback_lowers_the_rate_and_they_are_bounded():
    rollbacks = Rollbacks(limit=2, factor=0.5)
    assert (rollbacks.lr_scale, rollbacks.left) == (1.0, 2)
    rollbacks.events.append({"step": 40, "to_step": 20, "reason": "r"})
    assert (rollbacks.lr_scale, rollbacks.left) == (0.5, 1)
    assert rollbacks.describe(rollbacks.events[0]) == (
        "rollback 1 of 2 at step 40 to 20, learning rate x0.5: r"
    )


def test_a_recovery_takes_one_rollbacks_factor_back_when_enabled():
    rollbacks = Rollbacks(limit=3, factor=0.5)
    assert rollbacks.recover(10) is None  # off by default (train.rollback_restore_lr)
    rollbacks = Rollbacks(limit=3, factor=0.5, restore=True)
    assert rollbacks.recover(10) is None  # nothing to take back before a rollback
    for step in (40, 60):
        rollbacks.events.append({"step": step, "to_step": 20, "reason": "r"})
    assert rollbacks.lr_scale == 0.25
    assert rollbacks.recover(80) == (
        "learning rate restored to x0.5: a new best by more than 0.01 after the rollback at step 60"
    )
    assert rollbacks.recover(100).startswith("learning rate restored to x1:")
    assert rollbacks.recover(120) is None and rollbacks.lr_scale == 1.0  # never above the plan
    assert rollbacks.left == 1 and rollbacks.restored == [80, 100]


# ISBI's validation slices 16-19 (the bf16 14000-step recipe's seed 1, train_log.tsv at 76f8c82)
ISBI_CONSTANT = {"pixel_error": 0.1178783, "rand_error": 0.9060927, "wrong_fraction": 0.2108965}
SEED_1 = [  # step, pixel error, Rand error, share of wrong pixels, mean loss
    (250, 0.1178783, 0.4164972, 0.2108965, 1.593),
    (500, 0.1178783, 0.9060927, 0.2108965, 1.472),
    (750, 0.1178783, 0.3755272, 0.1855049, 1.418),
    (1000, 0.1072678, 0.3676704, 0.1701632, 1.217),
    (1250, 0.1178783, 0.4014359, 0.2108965, 1.293),
    (1500, 0.1128771, 0.6421157, 0.1705275, 1.244),
    (1750, 0.1178783, 0.3707140, 0.2108965, 1.113),
    (2000, 0.1178783, 0.3713407, 0.2108965, 1.341),
]


def replay(validations, kept_errors=None):
    """The validations given to a tiny run's guard, healing as training does; the run, the
    model kept at step 1000 (with `kept_errors`, if given, in place of its own) and the events."""
    config = TrainConfig(depth=2, base_channels=4, tile_out=20, device="cpu")
    run = Run.start(config, torch.device("cpu"), [])
    run.guard = CollapseGuard(dict(ISBI_CONSTANT))
    kept, events = None, []
    for step, pixel, rand, wrong, loss in validations:
        with torch.no_grad():  # the steps up to this validation
            for parameter in run.model.parameters():
                parameter.add_(0.01)
        metrics = {"pixel_error": pixel, "rand_error": rand, "wrong_fraction": wrong}
        reason = run.guard.verdict(metrics, loss)
        if reason:
            events.append(run.heal(reason, kept, config, step)[0])
        elif step == 1000:
            kept = model_file(run.model, config, step, kept_errors or metrics)
    return run, kept, events


def test_a_second_rollback_to_a_model_that_barely_learned_starts_afresh_with_a_warm_up():
    """ISBI's seed 1 went back to its step-1000 model (pixel error 0.91 of a constant's) at
    steps 1500 and 2000, the rate halved each time, and never learned; now the second time
    the network starts afresh at the plan's rate, reached over 500 steps."""
    run, kept, events = replay(SEED_1)
    assert events[0] == (
        "rollback 1 of 3 at step 1500 to 1000, learning rate x0.5: validation pixel_error rose "
        "to 0.1129 from its best 0.1073, more than halfway to a constant prediction's 0.1179; "
        "the validation before: validation pixel_error 0.1179 is no better than a constant "
        "prediction's (0.1179; best so far 0.1073)"
    )
    assert events[1].startswith(
        "rollback 2 of 3 at step 2000 to a fresh start (a rollback went back to the model of "
        "step 1000 before, and it has barely learned), learning rate x1 reached over 500 steps: "
        "validation pixel_error 0.1179 is no better than a constant prediction's"
    )
    fresh, rollbacks = run.model.state_dict(), run.rollbacks
    assert all(not torch.equal(fresh[key], value)
               for key, value in kept["model_state"].items() if value.is_floating_point())  # fmt: skip
    assert run.guard.best == {} and run.guard.losses == [] and not run.optimizer.state
    assert rollbacks.scale(2000) == pytest.approx(1 / 500)
    assert rollbacks.scale(2249) == pytest.approx(0.5) and rollbacks.scale(2499) == 1.0
    assert rollbacks.left == 1
    # The fresh network is judged from scratch: near a constant prediction it is not learning
    # yet, not gone bad (its best was forgotten).
    assert run.guard.verdict({**ISBI_CONSTANT, "rand_error": 0.4}, 1.3) is None


def test_a_model_that_learned_is_rolled_back_to_again_at_a_lower_rate():
    """The same validations with a kept model that had learned (pixel error 0.06): the second
    rollback goes back to it, at a quarter of the rate, as every healed run did."""
    learned = {"pixel_error": 0.06, "rand_error": 0.2, "wrong_fraction": 0.08}
    run, kept, events = replay(SEED_1, kept_errors=learned)
    assert events[1].startswith("rollback 2 of 3 at step 2000 to 1000, learning rate x0.25: ")
    assert all(torch.equal(run.model.state_dict()[key], value)
               for key, value in kept["model_state"].items())  # fmt: skip
    assert run.rollbacks.scale(2000) == run.rollbacks.scale(9000) == 0.25


def test_rollbacks_after_a_fresh_start_lower_its_rate_and_a_recovery_takes_them_back():
    rollbacks = Rollbacks(limit=4, factor=0.5, restore=True, fresh_warmup=0)
    rollbacks.events += [{"step": 40, "to_step": 20, "reason": "r"},
                         {"step": 60, "to_step": 0, "reason": "r", "dead_end": 20}]  # fmt: skip
    assert rollbacks.lr_scale == 1.0 and rollbacks.scale(60) == 1.0  # no warm-up asked for
    assert rollbacks.recover(70) is None  # nothing lowered since the fresh start
    rollbacks.events.append({"step": 100, "to_step": 80, "reason": "r"})
    assert rollbacks.lr_scale == 0.5 and rollbacks.recover(120).startswith(
        "learning rate restored to x1"
    )


@pytest.fixture(scope="module")
def demo_stores(tmp_path_factory):
    """The demo config's volume: 8 slices of 256², 6 to train on, 2 held out."""
    folder = tmp_path_factory.mktemp("demo")
    raw, labels = demo_volume((8, 256, 256), seed=0)
    write_tiff(folder / "raw.tif", raw)
    write_tiff(folder / "labels.tif", labels)
    for role, slices in (("train", (0, 6)), ("val", (6, 8))):
        chunk_volume(folder / "raw.tif", folder / f"{role}_raw.zarr", slices=slices)
        chunk_volume(folder / "labels.tif", folder / f"{role}_labels.zarr", slices=slices,
                     is_labels=True)  # fmt: skip
    compute_weights(folder / "train_labels.zarr", folder / "train_weights.zarr")
    return folder


def forced_collapse(demo_stores, tmp_path, **options):
    """The demo network (depth 3, 16 channels) trained at 100 times the demo's rate, reached by
    a warm-up: its config, kept model and log (header, rows as dicts of the logged text)."""
    config = TrainConfig(depth=3, base_channels=16, tile_out=148, steps=300, validate_every=50,
                         checkpoint_every=1000, learning_rate=1.0, warmup_steps=150,
                         device=TEST_DEVICE, **options)  # fmt: skip
    val = [
        load_volume(demo_stores / "val_raw.zarr", demo_stores / "val_labels.zarr", config=config)
    ]
    best = train(
        [load_volume(*(demo_stores / f"train_{n}.zarr" for n in ("raw", "labels", "weights")),
                     config=config)],  # fmt: skip
        val, config, tmp_path / "m.pt", tmp_path / "log.tsv", tmp_path / "c.pt",
    )  # fmt: skip
    lines = (tmp_path / "log.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    return config, best, header, rows


def test_a_collapse_forced_by_an_absurd_learning_rate_is_rolled_back_and_healed(
    demo_stores, tmp_path
):
    """It learns at the low rates, breaks at the high ones (silent at steps 100 and 150), and
    the rollbacks to the kept model with the rate halved each time end in a usable model.
    (At 50 times the rate, its spike at step 200 is watched and gone at step 250 by itself.)"""
    config, best, header, rows = forced_collapse(demo_stores, tmp_path)
    events = [row for row in rows if row["event"]]
    rollbacks = [row for row in events if row["event"].startswith("rollback ")]
    assert rollbacks and all(row["event"].startswith(("rollback ", "watched: ")) for row in events)
    assert "event" in header and all(" of 3 at step " in row["event"] for row in rollbacks)
    # After k rollbacks the rate is the schedule's times 0.5^k.
    last = rows[-1]
    expected = learning_rate(config, int(last["step"]) - 1) * 0.5 ** len(rollbacks)
    assert float(last["learning_rate"]) == pytest.approx(expected)
    # Usable: far better than a constant prediction, as a healthy demo run is (Rand ~0.01).
    assert best["metrics"]["rand_error"] < 0.05
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    assert saved["step"] == best["step"]


def test_a_recovered_run_gets_its_learning_rate_back(demo_stores, tmp_path):
    """The forced collapse above with train.rollback_restore_lr: once a validation beats every
    one before the run went bad, one rollback's factor is taken back, and the log's rates say so
    row by row."""
    config, _, _, rows = forced_collapse(demo_stores, tmp_path, rollback_restore_lr=True)
    events = [row["event"] for row in rows]
    # here: silent at steps 100 and 150 (x0.25), recovered at 200 (x0.5), silent again at 250
    assert any(event.startswith("learning rate restored to x0.5: ") for event in events)
    halvings = 0
    for row in rows:  # a row's rate is the one its steps trained at, before its own event
        expected = learning_rate(config, int(row["step"]) - 1) * 0.5**halvings
        assert float(row["learning_rate"]) == pytest.approx(expected)
        halvings += row["event"].startswith("rollback")
        halvings -= row["event"].startswith("learning rate restored")
        assert halvings >= 0


def test_a_nan_loss_starts_afresh_with_a_lower_rate_and_an_exhausted_run_stops_clearly(
    demo_stores, tmp_path
):
    from unetseg import UnetsegError

    def run(name, **overrides):
        config = TrainConfig(depth=3, base_channels=16, tile_out=148, steps=60, validate_every=20,
                             checkpoint_every=1000, learning_rate=5.0, grad_clip_norm=0.0,
                             device=TEST_DEVICE, **overrides)  # fmt: skip
        stores = (demo_stores / f"train_{n}.zarr" for n in ("raw", "labels", "weights"))
        val = (demo_stores / "val_raw.zarr", demo_stores / "val_labels.zarr")
        return train([load_volume(*stores, config=config)], [load_volume(*val, config=config)],
                     config, tmp_path / f"{name}.pt", tmp_path / f"{name}.tsv",
                     tmp_path / f"{name}_c.pt")  # fmt: skip

    best = run("healed", rollback_lr_factor=0.002)
    rows = [line.split("\t") for line in (tmp_path / "healed.tsv").read_text().splitlines()[1:]]
    assert rows[0][-1].startswith("rollback 1 of 3 at step ")
    assert "to a fresh start, learning rate x0.002: train: loss became nan" in rows[0][-1]
    assert [row[-1] for row in rows[1:]] == ["", "", ""] and best["metrics"]["rand_error"] < 0.1
    with pytest.raises(UnetsegError, match="train: loss became nan at step"):
        run("hopeless", max_rollbacks=1)  # 2.5: diverges again before any validation


def test_a_run_that_spends_its_rollbacks_stops_saying_what_it_kept_and_what_to_change(
    demo_stores, tmp_path, caplog
):
    """The forced collapse with one rollback allowed: the second collapse stops the run with the
    kept model, and the warning sets its errors beside a constant prediction's and names what
    to change (an ISBI seed of the paper's network stopped so, never having learned)."""
    with caplog.at_level(logging.WARNING, logger="unetseg.train"):
        _, best, _, rows = forced_collapse(demo_stores, tmp_path, max_rollbacks=1)
    assert rows[-1]["event"].startswith("stopped: ") and rows[-1]["event"].endswith(
        "after 1 rollbacks"
    )
    stop = next(
        record.getMessage() for record in caplog.records if "stopped: " in record.getMessage()
    )
    assert f"keeping the model of step {best['step']}, validation pixel_error " in stop
    assert "(a constant prediction's " in stop and "rand_error" in stop
    assert "choose another train.seed (0)" in stop and "model.norm: group" in stop
