"""A loss term for the topology of thin structures, beyond the paper: soft-clDice (Shit et al.,
"clDice - a novel topology-preserving loss function for tubular structure segmentation", CVPR
2021), on the not-interior class: the membranes between EM cells, the background gaps between
touching nuclei. A gap in a predicted membrane merges two cells and costs little pixel-wise;
clDice scores how much of the true membranes' skeleton the prediction covers and how much of the
prediction's skeleton lies on true membranes, so a gap costs as much as the skeleton it cuts.
`train.topology_weight` adds it to the weighted cross-entropy (0: off, the paper's loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Soft-skeleton thinning steps: the half-width in pixels of the widest structure thinned to its
# centre line (EM membranes are 2-10 px wide; the reference implementation uses 3 to 25).
SKELETON_ITERATIONS = 10
SMOOTH = 1.0  # keeps the ratios defined on tiles without any membrane


def soft_erode(image: torch.Tensor) -> torch.Tensor:
    """Min over the 4-neighbourhood, as the reference: a cross, not a 3x3 square."""
    vertical = -F.max_pool2d(-image, (3, 1), stride=1, padding=(1, 0))
    horizontal = -F.max_pool2d(-image, (1, 3), stride=1, padding=(0, 1))
    return torch.minimum(vertical, horizontal)


def soft_dilate(image: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(image, 3, stride=1, padding=1)


def soft_skeleton(image: torch.Tensor, iterations: int = SKELETON_ITERATIONS) -> torch.Tensor:
    """A differentiable skeleton of (N, 1, H, W) values in [0, 1]: what each erosion step
    removes that an opening would not restore, accumulated."""
    skeleton = F.relu(image - soft_dilate(soft_erode(image)))
    for _ in range(iterations):
        image = soft_erode(image)
        removed = F.relu(image - soft_dilate(soft_erode(image)))
        skeleton = skeleton + F.relu(removed - skeleton * removed)
    return skeleton


def cldice_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """1 - soft-clDice of the not-interior class (class 0) over the annotated pixels (w > 0).

    logits: (N, 2, H, W); target: (N, H, W) class ids; weights: (N, H, W), 0 where unannotated."""
    predicted = torch.softmax(logits.float(), dim=1)[:, :1]
    true = (target == 0).unsqueeze(1).float()
    annotated = (weights > 0).unsqueeze(1).float()
    predicted_skeleton, true_skeleton = soft_skeleton(predicted), soft_skeleton(true)
    # topology precision: the predicted centre lines that lie on true membranes; sensitivity:
    # the true centre lines that the prediction covers
    precision = ((predicted_skeleton * true * annotated).sum() + SMOOTH) / (
        (predicted_skeleton * annotated).sum() + SMOOTH
    )
    sensitivity = ((true_skeleton * predicted * annotated).sum() + SMOOTH) / (
        (true_skeleton * annotated).sum() + SMOOTH
    )
    return 1 - 2 * precision * sensitivity / (precision + sensitivity)
