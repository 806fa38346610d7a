"""bench/gpu-check.sh and the GPU harness tried here before GPU minutes are spent on them: the
check's tests selected as intended (the CPU standing in for the GPU), its prediction figure
with a tiny network, and the two scripts with a machine's start within one session's 15 device
minutes."""

import re
import subprocess

import torch
from conftest import REPO, gpu_machine_env

from bench import gpu, isbi_gpu

SESSION_S = 15 * 60  # a lent machine's device time, all calls and its start together
START_S = 180  # a machine's start ("minutes"), the copies there and back, the wait between calls


def test_the_gpu_check_runs_its_tests_and_skips_its_figures_without_a_gpu(tmp_path):
    # Caps far above the GPU's (60 s of tests, 240 s in all): here they guard against a hang,
    # not the device's minutes, and the CPU's training tests took over 240 s on a busy machine.
    env = gpu_machine_env(UNETSEG_TEST_DEVICE="cpu", GPU_CHECK_TESTS_SECONDS="1200")
    done = subprocess.run(["bash", "bench/gpu-check.sh", str(tmp_path), "1500"], cwd=REPO,
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = (tmp_path / "pytest.log").read_text()
    # 12 augmentation cases, prediction on the device, 5 training tests (7 with CUDA's fp16);
    # the GPU's out-of-memory error is skipped here
    assert re.search(r"\b18 passed\b", tests) and "failed" not in tests, tests[-2000:]
    skipped = (tmp_path / "bench.log").read_text().splitlines()
    no_gpu = "bench gpu: no CUDA device here; skipped"
    assert skipped == [no_gpu] * 3 + ["bench gpu-limits: no CUDA device here; skipped", no_gpu]
    assert not (tmp_path / "skipped.txt").exists()
    assert (tmp_path / "results.jsonl").read_text() == ""  # nothing measured, nothing recorded


def test_the_prediction_figures_are_named_by_precision_depth_and_workers(monkeypatch):
    recorded = []
    monkeypatch.setattr(gpu, "record", lambda name, value, *_, **extra: recorded.append(name))
    bare = gpu.cuda_prediction(torch.device("cpu"), base_channels=1, slices=(1, 2),
                               variants=[("fp32", False)], workers=(2,), size_px=512)  # fmt: skip
    assert recorded == ["predict_vs_bare_model_cuda_fp32_2_workers",
                        "predict_vs_bare_model_cuda_fp32_2_slices_2_workers"]  # fmt: skip
    assert set(bare) == {"fp32"} and bare["fp32"] > 0


def test_the_harness_and_the_check_fit_one_sessions_device_minutes():
    harness = (REPO / "bench/isbi-gpu.sh").read_text()
    check = (REPO / "bench/gpu-check.sh").read_text()
    harness_s = int(
        re.search(r"timeout --kill-after=5 (\d+) python3 -m bench.isbi_gpu", harness)[1]
    )
    check_s = int(re.search(r"budget=\$\{2:-(\d+)\}", check)[1])
    assert harness_s + check_s + START_S <= SESSION_S
    # the arms' training, then stores, start, prediction with and without TTA and scoring
    assert harness_s >= isbi_gpu.MINUTES * 60 + 120
    assert list(gpu.STEPS) == ["gpu-predict", "gpu-augment", "gpu-train", "gpu-more"]
    assert "gpu-predict gpu-augment gpu-train gpu-limits gpu-more" in check
