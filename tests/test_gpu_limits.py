"""`bench gpu-limits` tried on the CPU with a tiny network before GPU minutes are spent on it:
the same functions, with torch.compile's graphs run by torch's own kernels ("dynamo") and no
CUDA graphs."""

import pytest
import torch

from bench import gpu_limits

TINY = {"depth": 2, "base_channels": 2, "tile_out": 28}


def test_the_paper_network_costs_two_gflop_per_output_pixel():
    """The figure the card's limit is computed from (issue: 301 GFLOP per 572 -> 388 tile)."""
    flop = gpu_limits.flop_per_output_px(**gpu_limits.PAPER)
    assert flop * 388**2 == pytest.approx(301e9, rel=0.01)
    assert gpu_limits.flop_per_output_px(depth=4, base_channels=32, tile_out=388) < flop / 3


def test_forward_rates_eager_and_compiled():
    rates = gpu_limits.forward_rates(torch.device("cpu"), TINY, batch_sizes=(1, 2),
                                     precisions=("fp32",), compile_mode="dynamo", rounds=2)  # fmt: skip
    assert [(r["batch"], r["compile"], r["cuda_graphs"]) for r in rates] == [
        (1, "off", False), (2, "off", False), (2, "dynamo", False),
    ]  # fmt: skip
    assert all(rate["mpx_s"] > 0 for rate in rates)


def test_pipeline_rates_eager_and_compiled():
    rates = gpu_limits.pipeline_rates(torch.device("cpu"), TINY, slices=1, size_px=96,
                                      precision="fp32", layouts=((2, 48), (4, 96)),
                                      compile_mode="dynamo", workers=2, rounds=1)  # fmt: skip
    assert [(r["batch"], r["block_px"], r["compile"]) for r in rates] == [
        (2, 48, "off"), (4, 96, "off"), (4, 96, "dynamo"),
    ]  # fmt: skip
    assert all(rate["mpx_s"] > 0 for rate in rates)


def test_compiled_training_steps():
    times = gpu_limits.compiled_training(torch.device("cpu"), base_channels=1, steps=2,
                                         precision="fp32", compile_mode="dynamo")  # fmt: skip
    assert set(times) == {"off", "dynamo"} and all(s > 0 for s in times.values())
