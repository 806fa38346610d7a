"""Progress lines of long steps: counts, throughput and time left, logged while the work runs."""

import threading
import time

import numpy as np
import pytest
import torch
from conftest import write_tiff

from unetseg import progress
from unetseg.chunk import chunk_volume
from unetseg.predict import predict_volume
from unetseg.progress import ProgressLog
from unetseg.unet import UNet


def test_line_has_count_share_rate_and_time_left():
    log = ProgressLog("predict", "chunks", 40, 2e6, lambda: 0)
    assert log.line(10, 20.0) == "predict: 10 of 40 chunks (25 %), 1.00 Mpx/s, about 1 min 0 s left"
    assert log.line(40, 80.0) == "predict: 40 of 40 chunks (100 %), 1.00 Mpx/s"
    assert progress.duration(3 * 3600 + 125) == "3 h 2 min"


def test_lines_come_every_interval_while_the_work_runs(monkeypatch, caplog):
    monkeypatch.setattr(progress, "EVERY_S", 0.02)
    done = threading.Event()
    with (
        caplog.at_level("INFO", logger="unetseg.progress"),
        ProgressLog("x", "items", 5, 1, lambda: 2),
    ):
        done.wait(0.15)
    lines = [r.message for r in caplog.records]
    assert len(lines) >= 3 and all(line.startswith("x: 2 of 5 items (40 %)") for line in lines)


@pytest.fixture
def slow_progress(monkeypatch):
    monkeypatch.setattr(progress, "EVERY_S", 0.001)


def test_chunk_and_predict_report_progress(tmp_path, slow_progress, caplog, monkeypatch):
    from unetseg import chunk

    copy_slab = chunk.copy_slab

    def slow_copy(*arguments):  # long enough for a progress line whatever the machine
        time.sleep(0.01)
        return copy_slab(*arguments)

    monkeypatch.setattr(chunk, "copy_slab", slow_copy)
    raw = np.random.default_rng(0).integers(0, 255, (4, 96, 96)).astype(np.uint8)
    torch.manual_seed(0)
    model = UNet(depth=3, base_channels=4).eval()
    torch.save({"model_config": model.config, "model_state": model.state_dict()}, tmp_path / "m.pt")
    with caplog.at_level("INFO", logger="unetseg.progress"):
        chunk_volume(
            write_tiff(tmp_path / "raw.tif", raw), tmp_path / "raw.zarr", chunks=(1, 48, 48)
        )
        time.sleep(0.01)
        predict_volume(
            tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "p.zarr", 28, block_px=48
        )
    lines = [r.message for r in caplog.records]
    assert any(line.startswith("chunk raw.tif: ") and " slabs (" in line for line in lines), lines
    assert any(line.startswith("predict: ") and " of 16 chunks (" in line for line in lines), lines
    assert all("Mpx/s" in line for line in lines)
