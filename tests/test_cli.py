import subprocess
import sys

import pytest

from unetseg.cli import build_parser

STAGES = [
    "demo-data",
    "chunk",
    "export",
    "weights",
    "train",
    "predict",
    "segment",
    "evaluate",
    "report",
]


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_help(stage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([stage, "--help"])
    assert exit_info.value.code == 0
    assert "usage: unetseg " + stage in capsys.readouterr().out


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
