"""A full disk (a size-limited tmpfs; root only) while chunking, computing weights, predicting
and checkpointing: one line naming the output, nothing a rerun trusts, and once space is freed
the same command completes with the output of an uninterrupted run. A damaged checkpoint is set
aside and training starts afresh."""

import subprocess
import uuid

import numpy as np
import pytest
import torch
from conftest import write_tiff

from unetseg import UnetsegError, io
from unetseg.cli import main
from unetseg.unet import UNet


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 64 KiB, and a function that resizes it (the user freeing space)."""
    mountpoint = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {done.stderr.strip()}")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mountpoint)], check=True)

    yield mountpoint, resize
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def store_bytes(store) -> dict:
    """Every file of a store by its path inside it, with its content."""
    return {
        p.relative_to(store).as_posix(): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def one_line_naming(capsys, path) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}: no space left on the device" in err[0], err
    return err[0]


def assert_nothing_trusted(folder, name) -> None:
    assert not (folder / name).exists()
    assert not list(folder.glob(f".{name}.tmp-*")), list(folder.iterdir())


@pytest.fixture
def volume(tmp_path):
    """4 slices of 128 x 160 random uint8 (incompressible: 80 KiB in any store) and labels."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (4, 128, 160), dtype=np.uint8)
    labels = (rng.random((4, 128, 160)) > 0.5).astype(np.uint8)
    write_tiff(tmp_path / "raw.tif", raw)
    write_tiff(tmp_path / "labels.tif", labels)
    return tmp_path / "raw.tif", tmp_path / "labels.tif"


def test_chunk_and_weights_on_a_full_disk(tmp_path, small_disk, volume, capsys):
    disk, resize = small_disk
    raw_tif, labels_tif = volume
    for name, args in (
        ("raw.zarr", ["chunk", str(raw_tif)]),
        ("weights.zarr", ["weights", str(tmp_path / "labels.zarr")]),
    ):
        if name == "weights.zarr":
            assert main(["chunk", str(labels_tif), str(tmp_path / "labels.zarr"), "--labels"]) == 0
            capsys.readouterr()
        assert main([*args, str(tmp_path / name)]) == 0  # the uninterrupted run, on a roomy disk
        capsys.readouterr()
        resize("64k")
        assert main([*args, str(disk / name)]) == 1
        one_line_naming(capsys, disk / name)
        assert_nothing_trusted(disk, name)
        resize("8m")  # space freed: the same command
        assert main([*args, str(disk / name)]) == 0
        assert store_bytes(disk / name) == store_bytes(tmp_path / name)
        io.remove_path(disk / name)


def test_predict_on_a_full_disk_keeps_whole_chunks_and_resumes(
    tmp_path, small_disk, volume, capsys, caplog
):
    disk, resize = small_disk
    assert main(["chunk", str(volume[0]), str(tmp_path / "raw.zarr")]) == 0
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4).eval()
    torch.save({"model_config": model.config, "model_state": model.state_dict()}, tmp_path / "m.pt")
    args = ["predict", str(tmp_path / "m.pt"), str(tmp_path / "raw.zarr")]
    options = ["--tile-out", "28", "--block-px", "32", "--device", "cpu"]
    assert main([*args, str(tmp_path / "p.zarr"), *options]) == 0
    capsys.readouterr()
    assert main([*args, str(disk / "p.zarr"), *options]) == 1
    one_line_naming(capsys, disk / "p.zarr.partial")
    assert not (disk / "p.zarr").exists()
    resize("8m")
    with caplog.at_level("INFO", logger="unetseg.predict"):
        assert main([*args, str(disk / "p.zarr"), *options]) == 0
    assert "resuming" in caplog.text  # the whole chunks written before were kept
    ours, uninterrupted = io.open_zarr(disk / "p.zarr"), io.open_zarr(tmp_path / "p.zarr")
    assert np.array_equal(ours[...], uninterrupted[...])


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one(small_disk):
    from unetseg.train import save_atomic

    disk, _ = small_disk
    save_atomic({"step": 1, "weights": torch.zeros(100)}, disk / "checkpoint.pt")
    with pytest.raises(UnetsegError, match="checkpoint.pt: no space left on the device"):
        save_atomic({"step": 2, "weights": torch.zeros(100_000)}, disk / "checkpoint.pt")
    assert torch.load(disk / "checkpoint.pt", weights_only=True)["step"] == 1
    assert_nothing_trusted(disk, "unrelated")  # and no temporary left beside it
    assert [p.name for p in disk.iterdir()] == ["checkpoint.pt"]


def test_a_damaged_checkpoint_is_set_aside_and_training_starts_afresh(tmp_path, caplog):
    from test_train import TINY

    from unetseg.train import Run, TrainConfig, resume, save_checkpoint

    config = TrainConfig(**TINY)
    run = Run.start(config, torch.device("cpu"), [])
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, config, run, 7, [], [], None)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    with caplog.at_level("WARNING"):
        state = resume(path, config, Run.start(config, torch.device("cpu"), []))
    assert state["step"] == 0 and not path.exists()
    aside = list(tmp_path.glob("checkpoint.pt.unreadable-*"))
    assert len(aside) == 1 and "is unreadable" in caplog.text and "starts afresh" in caplog.text
