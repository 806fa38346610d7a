"""The soft-clDice loss term (unetseg.topology): thin structures thinned to their centre lines,
and a gap in a membrane costing more than the same number of wrong pixels that cut nothing."""

import torch

from unetseg import topology


def logits_for(membrane: torch.Tensor) -> torch.Tensor:
    """(1, 2, H, W) confident logits: class 0 (not interior) where `membrane` is 1."""
    return torch.stack([membrane, 1 - membrane]).unsqueeze(0) * 20.0 - 10.0


def membranes(size: int = 64) -> torch.Tensor:
    """Three cells: one horizontal and one vertical membrane, 3 px wide."""
    image = torch.zeros(size, size)
    image[30:33, :] = 1
    image[:30, 20:23] = 1
    return image


def test_soft_skeleton_thins_a_bar_to_its_centre_line():
    bar = torch.zeros(1, 1, 32, 32)
    bar[..., 10:15, 4:28] = 1  # 5 px thick
    skeleton = topology.soft_skeleton(bar)[0, 0]
    assert skeleton[12, 8:24].min() > 0.99  # the centre row
    assert skeleton[10, :].max() < 0.01 and skeleton[14, :].max() < 0.01  # not its edges
    line = torch.zeros(1, 1, 32, 32)
    line[..., 16, 4:28] = 1
    assert torch.equal(topology.soft_skeleton(line), line)  # already thin


def test_a_gap_in_a_membrane_costs_more_than_as_many_pixels_that_cut_nothing():
    truth = membranes()
    target = (1 - truth).long().unsqueeze(0)  # 1 = interior
    weights = torch.ones_like(target, dtype=torch.float32)
    perfect = topology.cldice_loss(logits_for(truth), target, weights)
    gap = truth.clone()
    gap[30:33, 40:44] = 0  # 12 pixels: the two lower cells merge
    thick = truth.clone()
    thick[33, 40:52] = 1  # 12 pixels: a thicker membrane, no cell merged
    gap_loss = topology.cldice_loss(logits_for(gap), target, weights)
    thick_loss = topology.cldice_loss(logits_for(thick), target, weights)
    assert perfect < 1e-3
    assert gap_loss > 0.01 and thick_loss < gap_loss / 2  # a thicker membrane cuts the same


def test_unannotated_pixels_do_not_count():
    truth = membranes()
    target = (1 - truth).long().unsqueeze(0)
    weights = torch.ones_like(target, dtype=torch.float32)
    gap = truth.clone()
    gap[30:33, 40:44] = 0
    weights[0, 24:40, 34:50] = 0  # the gap lies in an unannotated region
    assert topology.cldice_loss(logits_for(gap), target, weights) < 1e-3


def test_the_term_trains_a_network():
    """It has a gradient for every parameter, and with it a training step stays finite."""
    from unetseg import train
    from unetseg.model import UNet

    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4)
    config = train.TrainConfig(depth=2, base_channels=4, tile_out=20, topology_weight=0.5)
    images = torch.rand(1, 1, 60, 60)
    target = (torch.rand(1, 20, 20) > 0.3).long()
    weights = torch.ones(1, 20, 20)
    loss = topology.cldice_loss(model(images), target, weights)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer = train.make_optimizer(model, config)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    value = train.training_step(model, optimizer, scaler, (images, target, weights), config,
                                torch.device("cpu"), 0)  # fmt: skip
    plain = train.weighted_cross_entropy(model(images), target, weights).item()
    assert torch.isfinite(torch.tensor(value)) and value > plain  # the term is in the loss
