"""The U-Net of Ronneberger, Fischer & Brox (2015), Fig. 1: valid convolutions, crop and concatenate."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from unetseg.errors import UnetsegError

log = logging.getLogger(__name__)


def center_crop(features: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre (height, width) of an NCHW map (the paper's 'cropping' of skip maps)."""
    top = (features.shape[-2] - height) // 2
    left = (features.shape[-1] - width) // 2
    return features[..., top : top + height, left : left + width]


NORMS = ("none", "group", "batch")
GROUPS = 8  # GroupNorm's groups (fewer where a layer has fewer channels)


def normalization(kind: str, channels: int) -> list[nn.Module]:
    """The layer after each convolution, if any (paper: none); GroupNorm does not depend on the
    batch, which is 1 in the paper's recipe."""
    if kind == "group":
        return [nn.GroupNorm(math.gcd(GROUPS, channels), channels)]
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    if kind == "none":
        return []  # no layer at all: the paper's network keeps its parameter names
    raise UnetsegError(f"model.norm: '{kind}' is not one of {', '.join(NORMS)}")


class DoubleConv(nn.Sequential):
    """Two unpadded 3x3 convolutions, each followed by a ReLU (and a normalisation before it,
    if asked)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "none"):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3),
            *normalization(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3),
            *normalization(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net with `depth` 2x2 poolings and `base_channels` at the top level (paper: 4 and 64);
    `norm` adds a GroupNorm or BatchNorm after each 3x3 convolution (paper: none).

    Dropout sits at the end of the contracting path (paper §3.1): after the deepest encoder level,
    which also feeds its skip connection, and after the bottom level, as in the authors' release.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        dropout: float = 0.5,
        norm: str = "none",
    ):
        super().__init__()
        self.config = {
            "in_channels": in_channels,
            "n_classes": n_classes,
            "depth": depth,
            "base_channels": base_channels,
            "dropout": dropout,
            "norm": norm,
        }
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.encoders = nn.ModuleList(
            DoubleConv(c_in, c_out, norm)
            for c_in, c_out in zip([in_channels, *widths[:-2]], widths[:-1], strict=True)
        )
        self.bottom = DoubleConv(widths[-2], widths[-1], norm)
        self.upconvs = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2)
            for level in reversed(range(depth))
        )
        self.decoders = nn.ModuleList(
            DoubleConv(2 * widths[level], widths[level], norm) for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], n_classes, 1)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian weights with std sqrt(2/N), N the incoming nodes (paper §3); zero biases.

        For the up-convolutions torch's fan_in is 4 * C_out, as in the authors' Caffe filler.
        Normalisation layers start as the identity.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GroupNorm | nn.BatchNorm2d):
                module.reset_parameters()
                if isinstance(module, nn.BatchNorm2d):
                    module.reset_running_stats()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level == len(self.encoders) - 1:
                x = self.dropout(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.dropout(self.bottom(x))
        for upconv, decoder, skip in zip(self.upconvs, self.decoders, reversed(skips), strict=True):
            x = upconv(x)
            # Up-sampled map first, skip second: the release's concatenation order.
            x = decoder(torch.cat([x, center_crop(skip, x.shape[-2], x.shape[-1])], dim=1))
        return self.head(x)


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


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for 'bf16' (CPU and CUDA) or 'fp16' (CUDA only); a no-op for 'fp32'."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if dtype is torch.float16 and device.type != "cuda":
        raise UnetsegError("precision: fp16 needs a CUDA device; use bf16 on CPU")
    if device.type == "cpu":
        warn_if_bf16_is_emulated()
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def to_device(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """Copy an NCHW batch to `device` (non-blocking from pinned memory on CUDA)."""
    if device.type == "cuda" and not batch.is_pinned():
        batch = batch.pin_memory()
    batch = batch.to(device, non_blocking=True)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch
