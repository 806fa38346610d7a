"""The workflow on a real SLURM (tests/slurm/cluster.sh up): jobs, GPU requests, preemption.

In CI the cluster must be up (`.ci/run` starts it); elsewhere these tests skip without it.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, TINY_CONFIG, write_tiny_workdir

from bench.faults import digest_outputs
from unetseg import runlock

HARD_TIMEOUT_S = 900  # a stuck run fails the test instead of hanging CI
NON_LOCAL_RULES = {"demo_data", "chunk_raw", "chunk_labels", "weights", "train", "predict",
                   "segment", "evaluate", "evaluate_instances", "report_volume", "export_model"}  # fmt: skip


def cluster_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return done.returncode == 0 and "idle" in done.stdout + "mixed"


if not cluster_is_up():
    if os.environ.get("CI"):
        raise RuntimeError("CI must bring SLURM up first: bash tests/slurm/cluster.sh up")
    pytest.skip("no SLURM cluster here (bash tests/slurm/cluster.sh up)", allow_module_level=True)


def snakemake_on_slurm(workdir: Path, profile: str, *arguments: str) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        "--profile", profile, "--slurm-init-seconds-before-status-checks", "2", *arguments,
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True, cwd=workdir,
    )  # fmt: skip


def finish(process: subprocess.Popen) -> str:
    try:
        output, _ = process.communicate(timeout=HARD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"snakemake on SLURM did not finish within {HARD_TIMEOUT_S} s")
    assert process.returncode == 0, output[-4000:]
    return output


def slurm_job_ids(workdir: Path) -> dict[str, list[int]]:
    """Job ids per rule, from the SLURM plugin's per-job log files."""
    jobs: dict[str, list[int]] = {}
    for log in (workdir / ".snakemake/slurm_logs").glob("rule_*/**/*.log"):
        rule = log.relative_to(workdir / ".snakemake/slurm_logs").parts[0].removeprefix("rule_")
        jobs.setdefault(rule, []).append(int(log.stem))
    return {rule: sorted(ids) for rule, ids in jobs.items()}


def job_info(job_id: int) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", str(job_id)], capture_output=True, text=True
    ).stdout


def refused_second_run(workdir: Path, first: subprocess.Popen) -> None:
    """A second submitting process in the folder of a running one stops at once, naming it."""
    lock = workdir / runlock.LOCK
    deadline = time.monotonic() + HARD_TIMEOUT_S
    while not lock.exists():
        assert time.monotonic() < deadline and first.poll() is None, "the first run took no lock"
        time.sleep(0.2)
    second = snakemake_on_slurm(workdir, str(REPO / "profiles/slurm"))
    output, _ = second.communicate(timeout=120)
    assert second.returncode != 0, output[-2000:]
    assert f"another run is working in this folder: PID {first.pid} on host" in output


def test_demo_on_slurm_equals_local_run(finished_run, tmp_path):
    local_dir, _ = finished_run
    write_tiny_workdir(tmp_path)
    started = time.perf_counter()
    run = snakemake_on_slurm(tmp_path, str(REPO / "profiles/slurm"))
    refused_second_run(tmp_path, run)
    finish(run)
    seconds = time.perf_counter() - started
    jobs = slurm_job_ids(tmp_path)
    print(f"SLURM run: {seconds:.0f} s, job ids per rule: {jobs}")
    assert set(jobs) == NON_LOCAL_RULES
    assert len(jobs["chunk_raw"]) == 3 and len(jobs["train"]) == 1
    train = job_info(jobs["train"][0])
    assert "JobState=COMPLETED" in train and re.search(r"TresPerJob=gres(/|:)gpu:1", train), train
    assert "gpu" not in job_info(jobs["segment"][0]).split("TresPer")[-1]
    assert digest_outputs(tmp_path / "results") == digest_outputs(local_dir / "results")


def test_bare_profile_name_resolves_after_install(tmp_path):
    """`snakemake --profile slurm` finds the profile that `unetseg install-profile` installs."""
    config_home = tmp_path / "config_home"
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    done = subprocess.run(
        [sys.executable, "-m", "unetseg", "install-profile", "slurm"], capture_output=True, text=True, env=env
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    installed = config_home / "snakemake/slurm/config.yaml"
    assert str(installed.parent) in done.stderr
    assert installed.read_text() == (REPO / "profiles/slurm/config.yaml").read_text()
    dry = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    assert "executor: slurm" not in dry.stdout  # parsed, not echoed
    assert "Job stats" in dry.stdout


def test_preempted_train_job_resumes_from_checkpoint(tmp_path):
    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "steps": 600, "validate_every": 100,
                                       "checkpoint_every": 100}}  # fmt: skip
    for folder in ("slurm", "local"):
        (tmp_path / folder).mkdir()
        write_tiny_workdir(tmp_path / folder, config)
    target = "results/model/model.pt"
    # The retry asks for twice the memory: start where that fits this node.
    profile = profile_with_bases(tmp_path / "profile", {("train", "mem_mb"): 2000})
    process = snakemake_on_slurm(tmp_path / "slurm", str(profile), "--until", "train")
    train_log = tmp_path / "slurm/results/logs/train/all.log"
    deadline = time.monotonic() + HARD_TIMEOUT_S
    # Signal once the first checkpoint (step 100) is on disk: the SIGTERM checkpoint races with
    # the job's teardown (Snakemake's job step kills its shell at once), the periodic one does not.
    while not (train_log.exists() and "step 100/600" in train_log.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, "train never got going"
        time.sleep(0.2)
    train_job = slurm_job_ids(tmp_path / "slurm")["train"][0]
    subprocess.run(["scancel", "--signal=TERM", "--full", str(train_job)], check=True)
    output = finish(process)
    train_jobs = slurm_job_ids(tmp_path / "slurm")["train"]
    assert len(train_jobs) == 2, output[-3000:]  # the preempted job and its retry
    resumed = re.search(r"resuming from .* at step (\d+)", train_log.read_text())
    assert resumed and 100 <= int(resumed[1]) < 600, train_log.read_text()[-2000:]

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    local = subprocess.run(
        [sys.executable, "-m", "snakemake", target, "--snakefile", str(REPO / "Snakefile"),
         "--cores", "2", "--directory", str(tmp_path / "local"),
         "--configfile", str(tmp_path / "local/config.yaml")],
        capture_output=True, text=True, env=env, timeout=HARD_TIMEOUT_S,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    # Deterministic mode: the preempted and resumed run is the uninterrupted one, weights and all.
    models = [torch.load(tmp_path / f / target, weights_only=True) for f in ("slurm", "local")]
    assert models[0]["step"] == models[1]["step"]
    for name, tensor in models[1]["model_state"].items():
        assert torch.equal(models[0]["model_state"][name], tensor), name
    curves = [np.loadtxt(tmp_path / f / "results/model/train_log.tsv", skiprows=1, usecols=(0, 1, 2, 3))
              for f in ("slurm", "local")]  # fmt: skip
    assert np.abs(curves[0] - curves[1]).max() <= 1e-6


def test_predict_on_dask_jobqueue_slurm_workers(tmp_path, caplog):
    """predict.scheduler slurm: the chunks run in Dask workers that are SLURM jobs with a GPU."""
    import logging

    import dask.config
    import tifffile

    from unetseg import io
    from unetseg.chunk import chunk_volume
    from unetseg.model import UNet
    from unetseg.predict import predict_volume

    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4)
    torch.save({"model_config": model.config, "model_state": model.state_dict()}, tmp_path / "m.pt")
    raw = np.random.default_rng(0).integers(0, 255, (2, 64, 48)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", raw)
    chunk_volume(tmp_path / "raw.tif", tmp_path / "raw.zarr")
    common = dict(tile_out=28, block_px=32, out_dtype="float32", device="cpu")
    predict_volume(tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "t.zarr", **common)
    site = {"cores": 1, "memory": "1GB", "walltime": "00:10:00",
            "job_extra_directives": ["--gres=gpu:1"], "log_directory": str(tmp_path / "logs")}  # fmt: skip
    with caplog.at_level(logging.INFO), dask.config.set({"jobqueue.slurm": site}):
        predict_volume(
            tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "s.zarr", scheduler="slurm",
            workers=1, **common,
        )  # fmt: skip
    jobs = re.search(r"SLURM jobs \['(\d+)'\]", caplog.text)
    assert jobs, caplog.text
    print(f"Dask worker ran as SLURM job {jobs[1]}")
    assert re.search(r"TresPerNode=gres(/|:)gpu:1", job_info(int(jobs[1]))), job_info(int(jobs[1]))
    assert np.array_equal(
        io.open_zarr(tmp_path / "s.zarr")[...], io.open_zarr(tmp_path / "t.zarr")[...]
    )


def profile_with_bases(folder: Path, bases: dict[tuple[str, str], int]) -> Path:
    """A copy of the SLURM profile whose set-resources expressions start from other bases (e.g.
    train's runtime from 1 minute instead of 1440), their growth with `attempt` left as it is."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    for (rule, resource), base in bases.items():
        expression = str(profile["set-resources"][rule][resource])
        assert "attempt" in expression, f"{rule}.{resource} does not grow with attempt"
        profile["set-resources"][rule][resource] = re.sub(r"^\d+", str(base), expression)
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def submitted(output: str, rule: str) -> list[dict[str, int]]:
    """Each submission of `rule` in Snakemake's output: its attempt's mem_mb and runtime (not
    the job's own output, which Snakemake shows after a failure)."""
    blocks = re.findall(rf"^rule {rule}:\n(?:    .*\n)*?    resources: (.*)\nJob \d+ has been submitted",
                        output, re.M)  # fmt: skip
    return [{key: int(re.search(rf"\b{key}=(\d+)", block)[1]) for key in ("mem_mb", "runtime")}
            for block in blocks]  # fmt: skip


def test_jobs_killed_for_memory_or_time_are_retried_with_more(tmp_path):
    """SLURM kills predict over its memory (cgroup, OUT_OF_MEMORY) and train at its time limit
    (TIMEOUT); Snakemake names the reason, and each retry asks for more, by the profile's
    growth with `attempt` from small first sizes, and completes (train from its checkpoint)."""
    # About 96 s of training: past attempt 1's one-minute limit (slurmctld enforces limits
    # every 30 s), within attempt 3's three minutes.
    # No rollbacks: on a quiet machine (200 steps/s) the guard may end the run before its time.
    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "steps": 1_000_000,
                                       "max_minutes": 1.6, "validate_every": 200,
                                       "checkpoint_every": 50, "max_rollbacks": 0}}  # fmt: skip
    (tmp_path / "work").mkdir()
    workdir = write_tiny_workdir(tmp_path / "work", config)
    # predict's job peaks near 390 MB: 240 for Snakemake's job step, 150 for torch and the
    # tiles. 300 lets it start (and log, so that Snakemake shows the SLURM log after it) and
    # kills it; 600 suffices. Every resource grows at a retry: train's memory starts where
    # attempt 3 fits this node.
    bases = {("train", "runtime"): 1, ("train", "mem_mb"): 2000, ("predict", "mem_mb"): 300}
    profile = profile_with_bases(tmp_path / "profile", bases)
    output = finish(snakemake_on_slurm(workdir, str(profile), "--until", "evaluate"))
    jobs = slurm_job_ids(workdir)
    # The reason in Snakemake's report of the failed job: SLURM's state, or for a job step
    # killed by the kernel (the job then ends FAILED) the SLURM log that Snakemake shows.
    for rule, reason in (
        ("predict", "Out Of Memory|OUT_OF_MEMORY|exceeded memory limit"),
        ("train", "TIMEOUT"),
    ):
        errors = [part.split("Trying to restart job")[0]
                  for part in output.split(f"Error in rule {rule}:")[1:]]  # fmt: skip
        killed = [error for error in errors if re.search(reason, error)]
        assert killed, f"no {rule} job reported {reason}:\n{output[-4000:]}"
        print(f"{rule}: jobs {jobs[rule]}, {len(killed)} killed ({reason}):\n{killed[0][-1500:]}")
    train, predict = submitted(output, "train"), submitted(output, "predict")
    assert [job["runtime"] for job in train] == [1, 2, 3][: len(train)] and len(train) >= 2, train
    mems = sorted({job["mem_mb"] for job in predict})
    assert mems[:2] == [300, 600], predict
    resumed = re.search(
        r"resuming from .* at step (\d+)", (workdir / "results/logs/train/all.log").read_text()
    )
    assert resumed, "the retried train job started afresh"
    assert (workdir / "results/tiny_val/metrics.json").exists()
