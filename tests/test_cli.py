import os
import subprocess
import sys

import pytest

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
