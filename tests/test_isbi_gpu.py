"""The ISBI 2012 GPU harness, run on the CPU with a tiny network (what a GPU machine runs with
the paper's): arms at once, held-out slices predicted with and without TTA, one table."""

import json
import subprocess

import pytest
from conftest import ISBI, REPO, gpu_machine_env


def test_the_harness_trains_arms_at_once_and_tables_their_held_out_errors(tmp_path):
    if not (ISBI / "train-volume.tif").exists():
        pytest.skip(f"ISBI 2012 data not found at {ISBI}")
    done = subprocess.run(["bash", "bench/isbi-gpu.sh", str(tmp_path), "--tiny", "--arms",
                           "overlay,ema"], cwd=REPO, env=gpu_machine_env(ISBI_DATA=str(ISBI)),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = (tmp_path / "isbi-gpu.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[0:3] for row in rows] == [
        ["| overlay", "16-19", "no"], ["| overlay", "16-19", "yes"],
        ["| ema", "16-19", "no"], ["| ema", "16-19", "yes"],
    ]  # fmt: skip
    entries = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    names = ["isbi_gpu_warping", "isbi_gpu_rand", "isbi_gpu_pixel", "isbi_gpu_minutes",
             "isbi_gpu_minutes_to_rand_0.05", "isbi_gpu_validation_rand_leave_one_slice_out"]  # fmt: skip
    assert [entry["name"] for entry in entries] == names * 2
    assert [entry["settings"] for entry in entries[::6]] == [
        "config/isbi2012-gpu.yaml",
        {"train": {"ema_decay": 0.999}},
    ]
    for entry in entries:
        assert entry["tiny"] and entry["held_out"] == [16, 20] and entry["steps"] == 6
        assert entry["arms_sharing_the_gpu"] == 2
        if entry["name"] == "isbi_gpu_minutes_to_rand_0.05":  # a tiny network never gets there
            assert entry["value"] is None and entry["goal"] == "<= 3"
        elif entry["name"] != "isbi_gpu_minutes":
            assert 0 <= entry["value"] <= 1 and 0 <= entry["without_tta"]["rand_error"] <= 1
        if entry["name"] == "isbi_gpu_validation_rand_leave_one_slice_out":  # slices 16-19
            assert 0 <= entry["kept"] <= 1 and entry["goal"] == "report only"
    # Each arm kept its training log and model beside the stores both used.
    for arm in ("overlay", "ema"):
        assert (tmp_path / arm / "model.pt").exists() and (
            tmp_path / arm / "train_log.tsv"
        ).exists()


def test_time_to_accuracy_is_the_first_validation_at_the_target(tmp_path):
    from bench.isbi_gpu import minutes_to_rand

    log = tmp_path / "train_log.tsv"
    header = "step\tloss\tpixel_error\trand_error\tlearning_rate\tseconds\trand_spread\tsamples_per_s\tevent"
    rows = ["250\t0.5\t0.1\t0.2\t0.01\t30.0\t\t8.0\t",
            "300\t\t\t\t0.01\t33.0\t\t\trollback: loss not finite",  # no validation
            "500\t0.4\t0.06\t0.05\t0.01\t90.0\t0.15\t8.0\t",
            "750\t0.3\t0.05\t0.04\t0.01\t150.0\t0.16\t8.0\t"]  # fmt: skip
    log.write_text("\n".join([header, *rows]) + "\n")
    assert minutes_to_rand(log) == 1.5  # 90 s: the first row at or under 0.05
    assert minutes_to_rand(log, target=0.03) is None


def test_without_a_gpu_the_harness_stops_before_training_on_the_cpu(tmp_path):
    done = subprocess.run(["bash", "bench/isbi-gpu.sh", str(tmp_path)], cwd=REPO,
                          env=gpu_machine_env(), capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stdout
        == "bench isbi-gpu: torch sees no CUDA device here (--tiny runs it on the CPU)\n"
    )
    assert not (tmp_path / "isbi-gpu.md").exists()


def test_each_arm_trains_the_steps_that_end_its_schedule_within_the_minutes():
    from bench.isbi_gpu import ALONE_STEPS_PER_S, MINUTES, SHARED_STEPS_PER_S, arm_config, arm_steps

    for arms in (1, 2, 3, 4):
        steps = arm_steps(arms)
        rate = min(ALONE_STEPS_PER_S, SHARED_STEPS_PER_S / arms)
        assert 0.8 * MINUTES * 60 * rate <= steps <= 0.9 * MINUTES * 60 * rate
    assert arm_steps(3) == 6200  # three arms at ~26 steps/s each: the overlay's 12000 would stop
    assert arm_config("ema", tiny=False, steps=6200)["train"] | {"ema_decay": 0} == arm_config(
        "overlay", tiny=False, steps=6200
    )["train"] | {"ema_decay": 0}
    assert arm_config("overlay", tiny=False)["train"]["steps"] == 12000  # the overlay's own
    assert arm_config("overlay", tiny=True, steps=6200)["train"]["steps"] == 6  # tiny's few
