"""One run per folder: a second run stops at once naming the first (host, PID); a lock whose
process is gone is taken over. Unit cases, then real Snakemake processes."""

import json
import os
import socket
import subprocess
import time

import pytest
from conftest import snakemake, snakemake_command, write_tiny_workdir

from unetseg import runlock
from unetseg.errors import UnetsegError


@pytest.fixture
def sleeper():
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def holder_file(path, pid, host=None, start="auto"):
    start = runlock.process_start(pid) if start == "auto" else start
    path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid,
                                "process_start": start, "since": "then"}))  # fmt: skip
    return path


def test_acquire_release_and_a_live_holder(tmp_path, sleeper):
    lock = tmp_path / "run.lock"
    assert runlock.acquire(lock) is None
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    runlock.release(lock)
    assert not lock.exists()
    holder_file(lock, sleeper.pid)
    with pytest.raises(
        UnetsegError, match=f"another run is working in this folder: PID {sleeper.pid} on host"
    ):
        runlock.acquire(lock)
    runlock.release(lock)  # not ours: left alone
    assert json.loads(lock.read_text())["pid"] == sleeper.pid


def test_stale_locks_are_taken_over(tmp_path, sleeper):
    lock = tmp_path / "run.lock"
    dead = subprocess.Popen(["true"])
    dead.wait()
    # the process is gone; its PID now belongs to another process (another start time)
    for pid, start in ((dead.pid, "auto"), (sleeper.pid, "1")):
        note = runlock.acquire(holder_file(lock, pid, start=start))
        assert note == (f"took over a stale lock: PID {pid} on host {socket.gethostname()}, "
                        f"since then ({lock}), whose process is gone")  # fmt: skip
        runlock.release(lock)
    lock.write_text('{"host": "elsew')  # cut short while written
    assert runlock.acquire(lock).startswith("took over a stale lock")


def test_another_hosts_lock_is_not_taken(tmp_path):
    lock = holder_file(tmp_path / "run.lock", 1, host="node-b", start="5")
    with pytest.raises(UnetsegError, match="PID 1 on host node-b"):
        runlock.acquire(lock)


@pytest.mark.slow
def test_second_snakemake_stops_at_once_then_a_killed_runs_lock_is_taken_over(tmp_path):
    workdir = write_tiny_workdir(tmp_path)
    command, env = snakemake_command(workdir)
    first = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lock = workdir / runlock.LOCK
    deadline = time.monotonic() + 120
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lock.exists(), "the first run took no lock"
    started = time.monotonic()
    second = snakemake(workdir, timeout=120)
    assert second.returncode != 0 and time.monotonic() - started < 60
    assert f"another run is working in this folder: PID {first.pid} on host" in second.stderr
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-2000:]  # undisturbed
    assert not lock.exists()  # released at its end
    # a run killed with SIGKILL leaves its lock; the next run takes it over and completes
    killed = subprocess.Popen(["sleep", "1"])
    killed.kill()
    killed.wait()
    holder_file(lock, killed.pid, start="123")
    rerun = snakemake(workdir, "--forcerun", "summarize")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"took over a stale lock: PID {killed.pid} on host" in rerun.stderr
    assert not lock.exists()
