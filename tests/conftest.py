import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "data" / "isbi2012"
# The device of the train and device-precision tests: cpu here and in CI; on a GPU machine
# `UNETSEG_TEST_DEVICE=cuda pytest tests/test_train.py tests/test_predict.py` runs the same tests
# through the CUDA paths (fp16 + grad scaling, pinned memory, non-blocking copies).
TEST_DEVICE = os.environ.get("UNETSEG_TEST_DEVICE", "cpu")
# Mixed precisions each device runs: fp16 autocast is CUDA only.
TEST_PRECISIONS = ["bf16"] if TEST_DEVICE == "cpu" else ["fp16", "bf16"]


def gpu_machine_env(**variables: str) -> dict[str, str]:
    """The environment of the GPU scripts' CPU dry runs: this venv's python3 first on PATH, and
    what a lent GPU machine lacks (snakemake, matplotlib, ...) failing to import, as there
    (tests/gpu_machine/sitecustomize.py)."""
    bin_folder = os.path.dirname(sys.executable)
    python_path = os.pathsep.join(filter(None, [str(REPO / "tests/gpu_machine"),
                                                os.environ.get("PYTHONPATH")]))  # fmt: skip
    return {**os.environ, "PATH": f"{bin_folder}:{os.environ['PATH']}",
            "PYTHONPATH": python_path, **variables}  # fmt: skip


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """Commands run in-process (`cli.main(["train", ...])`) set torch's thread count for the
    rest of the process; the next test gets the count it started with. (A chaotic training test,
    test_rollback's forced collapse, took other rollbacks on 1 thread after test_train's.)"""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    yield
    if threads is not None:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def isbi_labels() -> np.ndarray:
    path = ISBI / "train-labels.tif"
    if not path.exists():
        pytest.skip(f"ISBI 2012 data not found at {ISBI}")
    return tifffile.imread(path)


@pytest.fixture(scope="session")
def demo_arrays() -> tuple[np.ndarray, np.ndarray]:
    from unetseg.data import demo_volume

    return demo_volume((4, 96, 96), seed=1, cell_diameter_px=24)


def write_tiff(path: Path, array: np.ndarray, **kwargs) -> Path:
    if not kwargs.get("imagej"):
        kwargs.setdefault("photometric", "minisblack")  # else tifffile takes (3, y, x) for RGB
    tifffile.imwrite(path, array, **kwargs)
    return path


# --- the real workflow on a tiny demo, shared by the end-to-end tests ---
TINY_CONFIG = {
    "results": "results",
    "demo": {"shape": [4, 64, 64], "seed": 3},
    "volumes": [
        {"name": "tiny_train", "raw": "results/demo/raw.tif", "labels": "results/demo/labels.tif",
         "role": "train", "slices": [0, 3]},
        {"name": "tiny_val", "raw": "results/demo/raw.tif", "labels": "results/demo/labels.tif",
         "role": "validate", "slices": [3, 4]},
        {"name": "tiny_extra", "raw": "extra.tif", "role": "predict"},
    ],
    "chunk": {"chunk_shape": [1, 32, 32]},
    "model": {"depth": 2, "base_channels": 4},
    "train": {"tile_out": 20, "steps": 10, "validate_every": 5, "checkpoint_every": 5, "workers": 0},
    "predict": {"tile_out": 28, "block_px": 32},
    "segment": {"threshold": "auto"},
}  # fmt: skip


def write_tiny_workdir(workdir: Path, config: dict = TINY_CONFIG) -> Path:
    """The config and the predict volume's own raw file (the demo rule makes the other two)."""
    from unetseg.data import demo_volume

    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    write_tiff(workdir / "extra.tif", demo_volume((2, 40, 48), seed=5)[0])
    return workdir


def snakemake_command(workdir: Path, *arguments: str) -> tuple[list[str], dict]:
    """The command line and environment of a real Snakemake run of the workflow in `workdir`."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2",
        *arguments,
    ]  # fmt: skip
    return command, env


def snakemake(workdir: Path, *arguments: str, timeout: int = 600) -> subprocess.CompletedProcess:
    command, env = snakemake_command(workdir, *arguments)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def jobs_in_dry_run(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    workdir = write_tiny_workdir(tmp_path_factory.mktemp("run"))
    done = snakemake(workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir, done
