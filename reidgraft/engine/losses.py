"""The re-ID metric losses of the strong baseline: batch-hard triplet and center loss.

Both see the pooled feature before the BNNeck (`models/reid_head.py`). They are computed in fp32
whatever the autocast: distances between nearby features lose too much in bf16.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn


def pairwise_distances(features: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of `features` in fp32 (clamped so the sqrt has a
    gradient). Autocast is switched off here: it would run the product in bf16 or fp16 even on
    fp32 inputs, and its error (up to 2 on distances near 19 at dim 2048) dwarfs the margin."""
    device = features.device.type
    with torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else nullcontext():
        features = features.float()
        squared = features.pow(2).sum(dim=1)
        distances = squared[:, None] + squared[None, :] - 2 * features @ features.T
        return distances.clamp(min=1e-12).sqrt()


def batch_hard_triplet(features: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Hermans et al. 2017: for each anchor, its farthest positive and nearest negative in the
    batch; the mean of max(0, d(a, p) - d(a, n) + margin) over anchors that have both."""
    distances = pairwise_distances(features)
    same = labels[:, None] == labels[None, :]
    itself = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives, negatives = same & ~itself, ~same
    hardest_positive = distances.masked_fill(~positives, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(~negatives, float("inf")).amin(dim=1)
    usable = positives.any(dim=1) & negatives.any(dim=1)
    if not usable.any():  # no anchor has both: nothing to learn from this batch
        return features.sum() * 0.0
    losses = torch.relu(hardest_positive - hardest_negative + margin)
    return losses[usable].mean()


class CenterLoss(nn.Module):
    """Wen et al. 2016: the mean squared distance of each feature to its class's center. The
    centers are parameters of their own, stepped by their own optimizer (`center_optimizer`)."""

    def __init__(self, num_classes: int, feature_dim: int, *, seed: int | None = None):
        super().__init__()
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.centers = nn.Parameter(torch.randn(num_classes, feature_dim, generator=generator))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.centers[labels]).pow(2).sum(dim=1).mean()


def center_optimizer(center_loss: CenterLoss, lr: float) -> torch.optim.Optimizer:
    """Plain SGD on the centers, as the strong baseline steps them."""
    return torch.optim.SGD(center_loss.parameters(), lr=lr)


def step_centers(
    center_loss: CenterLoss,
    optimizer: torch.optim.Optimizer,
    weight: float,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Step the centers by the gradient of the unweighted center loss: the loss was scaled by
    `weight` for the network, and the centers should move at their own learning rate alone.
    Under fp16 the gradient is first unscaled, and the step goes through the `scaler` (which
    skips it when the gradients overflowed)."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    for parameter in center_loss.parameters():
        if parameter.grad is not None:
            parameter.grad.div_(weight)
    if scaler is not None:
        scaler.step(optimizer)
    else:
        optimizer.step()
