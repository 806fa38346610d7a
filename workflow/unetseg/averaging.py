"""An exponential moving average (EMA) of the network's weights, validated and kept instead of
the raw weights (not in the paper): with batch 1 and momentum 0.99 the raw weights wander from
step to step, and which of them a validation happens to see is luck; their average moves slowly.

Built on torch's own `AveragedModel`. The decay warms up as (1 + n) / (10 + n) (as timm's EMA
does), so that early validations see recent weights, not the initialisation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_update(decay: float):
    """AveragedModel's multi_avg_fn: w_avg <- d w_avg + (1 - d) w, d = min(decay, (1+n)/(10+n))."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged) -> None:
        n = int(n_averaged)
        weight = 1 - min(decay, (1 + n) / (10 + n))
        floats = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        for a, c in zip(averaged, current, strict=True):  # BatchNorm's batch counter
            if not a.is_floating_point():
                a.copy_(c)

    return update


class WeightAverage:
    """The averaged network beside the trained one; `network` is what validation and the kept
    model use: the average, or the trained network itself when the decay is 0 (the paper)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 <= decay < 1:
            raise ValueError(f"train.ema_decay: {decay} must be in [0, 1)")
        self.model, self.decay = model, decay
        self.averaged = (
            AveragedModel(model, multi_avg_fn=ema_update(decay), use_buffers=True)
            if decay
            else None
        )

    @property
    def network(self) -> nn.Module:
        return self.averaged.module if self.averaged is not None else self.model

    def update(self) -> None:
        """After each optimiser step."""
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)

    def restart(self) -> None:
        """Start the average afresh from the trained network's weights (after a rollback)."""
        if self.averaged is not None:
            self.averaged.n_averaged.zero_()
            self.averaged.update_parameters(self.model)

    def state_dict(self) -> dict | None:
        return self.averaged.state_dict() if self.averaged is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.averaged is not None and state is not None:
            self.averaged.load_state_dict(state)
