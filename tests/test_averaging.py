import pytest
import torch

from unetseg.averaging import WeightAverage
from unetseg.model import UNet


def parameters(network) -> list[torch.Tensor]:
    return [p.detach().clone() for p in network.parameters()]


def test_the_average_follows_the_weights_with_a_warming_decay():
    """w_avg <- d w_avg + (1 - d) w after each step, d = min(decay, (1 + n) / (10 + n)): the
    first update copies, the next ones weigh recent weights more until the decay is reached."""
    torch.manual_seed(0)
    model = UNet(depth=1, base_channels=2, norm="batch")
    average = WeightAverage(model, decay=0.5)
    expected = None
    for n in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update()
        current = parameters(model)
        if expected is None:
            expected = current
        else:
            d = min(0.5, (1 + n) / (10 + n))  # n: updates averaged before this one
            expected = [d * e + (1 - d) * c for e, c in zip(expected, current, strict=True)]
        for got, want in zip(parameters(average.network), expected, strict=True):
            assert torch.allclose(got, want, atol=1e-6)
    assert average.network is not model
    # BatchNorm's running statistics are averaged too (use_buffers).
    assert average.averaged.use_buffers


def test_decay_zero_is_the_network_itself_and_a_restart_copies_it():
    model = UNet(depth=1, base_channels=2)
    assert WeightAverage(model, 0.0).network is model
    average = WeightAverage(model, 0.9)
    average.update()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.restart()
    for got, want in zip(parameters(average.network), parameters(model), strict=True):
        assert torch.equal(got, want)


def test_a_decay_of_one_or_more_is_refused():
    with pytest.raises(ValueError, match="train.ema_decay"):
        WeightAverage(UNet(depth=1, base_channels=2), 1.0)
