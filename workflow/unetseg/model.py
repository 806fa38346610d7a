"""The network (unetseg.unet) on a device: placement, precision, layout, size."""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import torch
from torch import nn

from unetseg.errors import UnetsegError
from unetseg.unet import NORMS, DoubleConv, UNet, center_crop  # noqa: F401 (the network, re-exported)

log = logging.getLogger(__name__)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_conv_layers(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d | nn.ConvTranspose2d) for m in model.modules())


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UnetsegError(f"device: '{name}' requested but CUDA is not available")
    return torch.device(name)


def cpu_bf16_instructions() -> list[str]:
    """The CPU's native bf16 instruction sets (Linux); without them bf16 convolutions are emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted({flag for flag in flags if flag in ("avx512_bf16", "amx_bf16")})


@functools.cache
def warn_if_bf16_is_emulated() -> None:
    if not cpu_bf16_instructions():
        log.warning(
            "precision bf16 on a CPU without avx512_bf16 or amx_bf16: it is emulated and slower "
            "than fp32 here (BENCHMARKS.md: cpu_bf16_cl_vs_fp32); use fp32 on this machine"
        )


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it (compute capability
    8 or more), a CPU with avx512_bf16 or amx_bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_bf16_instructions())


def resolved_precision(precision: str, device: torch.device) -> str:
    """'auto': bf16 where `device` runs it natively, else fp32 (BENCHMARKS.md, "auto precision
    and layout": on an AVX-512-bf16 CPU prediction 2.8x as fast as fp32, probabilities within
    0.07 of fp32's). Other values are returned as they are."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def resolved_channels_last(channels_last: bool | str) -> bool:
    """'auto': channels_last, the faster layout on every device measured (CPU fp32 2.0x on an
    AVX-512 EPYC and 1.6x on an AVX2 one; with bf16 and on GPUs too), equal to the default
    layout's results within 2e-6."""
    return True if channels_last == "auto" else bool(channels_last)


def resolved(precision: str, channels_last: bool | str, device: torch.device) -> tuple[str, bool]:
    """'auto' precision and layout made what they are on `device` (logged when 'auto' chose)."""
    chosen = resolved_precision(precision, device), resolved_channels_last(channels_last)
    if chosen != (precision, channels_last):
        log.info("on %s: precision %s, channels_last %s", device, *chosen)
    return chosen


def autocast(
    device: torch.device, precision: str, cache: bool = True
) -> contextlib.AbstractContextManager:
    """Autocast for 'bf16' (CPU and CUDA) or 'fp16' (CUDA only); a no-op for 'fp32'. `cache`:
    keep the weights' casts while inside (off under CUDA graph capture)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if dtype is torch.float16 and device.type != "cuda":
        raise UnetsegError("precision: fp16 needs a CUDA device; use bf16 on CPU")
    if device.type == "cpu":
        warn_if_bf16_is_emulated()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)


def prepare(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


# torch.compile's modes, "off" (eager, the default) and "dynamo": graphs captured but run by
# torch's eager kernels (backend "eager"), which needs no compiler: what a test runs anywhere.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune-no-cudagraphs", "dynamo")


def compiled(model: nn.Module, mode: str = "off") -> nn.Module:
    """`model` under torch.compile in `mode` (COMPILE_MODES); "reduce-overhead" adds CUDA graphs.
    The first call of each input shape compiles (tens of seconds for the paper's network)."""
    if mode not in COMPILE_MODES:
        raise UnetsegError(f"compile: '{mode}' is not one of {', '.join(COMPILE_MODES)}")
    if mode == "off":
        return model
    if mode == "dynamo":
        return torch.compile(model, backend="eager")
    return torch.compile(model, mode=mode)


def to_device(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """Copy an NCHW batch to `device` (non-blocking from pinned memory on CUDA)."""
    if device.type == "cuda" and not batch.is_pinned():
        batch = batch.pin_memory()
    batch = batch.to(device, non_blocking=True)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
