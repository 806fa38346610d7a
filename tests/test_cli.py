import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, TEST_DEVICE

from unetseg.cli import build_parser

STAGES = [
    "demo-data", "chunk", "export", "weights", "train", "predict", "segment", "evaluate",
    "evaluate-instances", "summarize", "install-profile", "report",
]  # fmt: skip


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_help(stage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([stage, "--help"])
    assert exit_info.value.code == 0
    assert "usage: unetseg " + stage in capsys.readouterr().out


def test_every_option_is_explained_with_its_default():
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    for stage, parser in commands.choices.items():
        for action in parser._actions:
            assert action.help, f"unetseg {stage} {action.dest}: no help text"
    predict_help = commands.choices["predict"].format_help()
    assert "(default: 768)" in predict_help  # --block-px
    assert "(default: None)" not in predict_help and "(default: False)" not in predict_help


def test_user_error_is_one_line_and_nonzero(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "unetseg", "chunk", str(tmp_path / "nothing.tif"), str(tmp_path / "o.zarr")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == f"unetseg chunk: error: {tmp_path / 'nothing.tif'}: no such file\n"


def test_demo_data_command(tmp_path):
    import tifffile

    done = subprocess.run(
        [sys.executable, "-m", "unetseg", "demo-data", "--raw", str(tmp_path / "r.tif"),
         "--labels", str(tmp_path / "l.tif"), "--shape", "2", "48", "40"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert tifffile.imread(tmp_path / "r.tif").shape == (2, 48, 40)
    assert set(tifffile.imread(tmp_path / "l.tif").ravel().tolist()) == {0, 255}


def test_unwritable_output_folder_is_one_clear_error(tmp_path, capsys):
    from unetseg.cli import main

    locked = tmp_path / "locked"
    locked.mkdir()
    # Root ignores permission bits; an immutable folder refuses even root.
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        locked.chmod(0o500)
        if os.access(locked, os.W_OK):
            pytest.skip("cannot make a folder unwritable here (no chattr, running as root)")
    try:
        code = main(["demo-data", "--raw", str(locked / "r.tif"), "--labels", str(locked / "l.tif"),
                     "--shape", "1", "16", "16"])  # fmt: skip
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o700)
    assert code == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"unetseg demo-data: error: {locked}: output folder is not writable"]
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize(
    "given, parsed", [([], False), (["--channels-last"], True), (["--channels-last", "true"], True),
                      (["--channels-last", "false"], False), (["--channels-last", "auto"], "auto")],
)  # fmt: skip
def test_channels_last_takes_a_flag_or_a_value(given, parsed):
    args = build_parser().parse_args(["predict", "m.pt", "raw.zarr", "out.zarr", *given])
    assert args.channels_last == parsed


def test_channels_last_refuses_other_values(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(
            ["predict", "m.pt", "raw.zarr", "out.zarr", "--channels-last", "yes"]
        )
    assert "expected true, false or auto, got 'yes'" in capsys.readouterr().err


# A job that has started: its libraries mapped, then an address-space limit of 1 GiB more, so
# that a batch too large for it fails to allocate for real (as on a smaller machine or GPU).
LIMITED = """import resource, sys
import numpy, torch
from unetseg.cli import main
size = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (size * 1024 + 2**30, resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def wide_model_and_slice(tmp_path):
    from bench.predict import make_raw, save_model

    make_raw(tmp_path / "raw.zarr", (1, 2048, 2048))
    save_model(tmp_path / "model.pt", depth=2, base_channels=16)
    return tmp_path / "model.pt", tmp_path / "raw.zarr"


def test_running_out_of_memory_is_one_line_naming_what_to_lower(tmp_path, wide_model_and_slice):
    model, raw = wide_model_and_slice
    done = subprocess.run(
        [sys.executable, "-c", LIMITED, "predict", str(model), str(raw), str(tmp_path / "p.zarr"),
         "--tile-out", "2000", "--block-px", "2048", "--batch-size", "4", "--device", "cpu"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "workflow")},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    # one line: the allocation that failed (a batch's feature map: about 1 GiB), what to lower
    assert re.fullmatch(
        r"unetseg predict: error: the CPU ran out of memory allocating [\d.]+ [MG]iB; lower "
        r"predict\.batch_size \(4\) or predict\.tile_out \(2000\), or predict\.workers \(1\): "
        r"each worker holds a batch on the device",
        done.stderr.splitlines()[-1],
    ), done.stderr[-2000:]
    assert not (tmp_path / "p.zarr").exists()  # only its .partial, which a rerun resumes


def test_out_of_memory_errors_are_told_apart_from_others():
    import numpy as np
    import torch

    from unetseg.errors import out_of_memory

    cuda = torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB "
        "of which 1.06 GiB is free. Including non-PyTorch memory, this process has 78.1 GiB in use."
    )
    assert out_of_memory(cuda) == "GPU 0 (79.19 GiB) ran out of memory allocating 2.00 GiB"
    for allocate in (lambda: torch.empty(2**48, dtype=torch.uint8),
                     lambda: np.empty(2**48, np.uint8)):  # fmt: skip
        with pytest.raises((RuntimeError, MemoryError)) as error:
            allocate()  # 256 TiB: more than any address space
        assert out_of_memory(error.value) == "the CPU ran out of memory allocating 256.00 TiB"
    assert out_of_memory(RuntimeError("a shape mismatch")) is None


@pytest.mark.skipif(TEST_DEVICE != "cuda", reason="a GPU's own error (bench/gpu-check.sh)")
def test_a_gpu_running_out_of_memory_is_one_line(tmp_path, wide_model_and_slice, capsys):
    import torch

    from unetseg.cli import main

    model, raw = wide_model_and_slice
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(2**30 / total)  # a card of 1 GiB
    try:
        code = main(["predict", str(model), str(raw), str(tmp_path / "p.zarr"), "--tile-out",
                     "2000", "--block-px", "2048", "--batch-size", "4", "--device", "cuda"])  # fmt: skip
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert code == 1
    assert re.fullmatch(
        r"unetseg predict: error: (GPU 0 \([\d.]+ GiB\)|the GPU) ran out of memory( allocating "
        r"[\d.]+ \w+)?; lower predict\.batch_size \(4\) or predict\.tile_out \(2000\), or "
        r"predict\.workers \(1\): each worker holds a batch on the device",
        capsys.readouterr().err.splitlines()[-1],
    )


def test_training_out_of_memory_names_the_training_keys():
    from unetseg.cli import memory_advice

    args = build_parser().parse_args(["train", "--raw", "r", "--labels", "l", "--weights", "w",
                                      "--model", "m", "--log", "t", "--checkpoint", "c",
                                      "--settings", '{"batch_size": 4}'])  # fmt: skip
    assert memory_advice(args) == "lower train.batch_size (4) or train.tile_out (388)"
