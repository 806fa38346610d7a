"""The U-Net of Ronneberger, Fischer & Brox (2015), Fig. 1: valid convolutions, crop and concatenate.

This file imports nothing but torch: a bioimage.io model package carries it as its architecture
source (unetseg export-model), so the network opens without this package.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F


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
    raise ValueError(f"model.norm: '{kind}' is not one of {', '.join(NORMS)}")


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
        # Indexing, not reversed(skips) or zip(strict=): forms TorchScript compiles.
        for level, (upconv, decoder) in enumerate(zip(self.upconvs, self.decoders)):  # noqa: B905
            skip = skips[len(skips) - 1 - level]
            x = upconv(x)
            # Up-sampled map first, skip second: the release's concatenation order.
            x = decoder(torch.cat([x, center_crop(skip, x.shape[-2], x.shape[-1])], dim=1))
        return self.head(x)
