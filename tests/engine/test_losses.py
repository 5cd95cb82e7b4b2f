"""The re-ID metric losses: batch-hard triplet and center loss, and the centers' own step."""

import pytest
import torch

from reidgraft.engine.losses import CenterLoss, batch_hard_triplet, center_optimizer, step_centers


def test_batch_hard_triplet_equals_a_hand_computation():
    # 1-D features, so every distance is |a - b|: labels 0 0 1 1 at 0, 1, 3, 6
    features = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: farthest positive 1, nearest negative 3 -> max(0, 1 - 3 + m)
    # anchor 1: positive 1, negative 2                  -> max(0, 1 - 2 + m)
    # anchor 2: positive 3, negative 2 (from 1)         -> max(0, 3 - 2 + m)
    # anchor 3: positive 3, negative 5 (from 1)         -> max(0, 3 - 5 + m)
    margin = 0.5
    expected = sum(max(0, p - n + margin) for p, n in [(1, 3), (1, 2), (3, 2), (3, 5)]) / 4
    assert batch_hard_triplet(features, labels, margin).item() == pytest.approx(expected)
    # an anchor without a positive is left out of the mean
    lone = batch_hard_triplet(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([0, 0, 1]), margin)
    assert lone.item() == pytest.approx((max(0, 1 - 3 + margin) + max(0, 1 - 2 + margin)) / 2)


def test_batch_hard_triplet_is_computed_in_fp32_under_autocast():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(64, 2048, generator=generator)
    labels = torch.arange(16).repeat_interleave(4)
    exact = batch_hard_triplet(features, labels, 0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = batch_hard_triplet(features, labels, 0.3)
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(exact.item(), rel=1e-5)


def test_triplet_distances_have_shapes_on_the_meta_device():  # (no autocast there to switch off)
    from reidgraft.engine.losses import pairwise_distances

    assert pairwise_distances(torch.zeros(4, 8, device="meta")).shape == (4, 4)


def test_batch_hard_triplet_gradient_moves_the_hard_pairs():
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [5.0, 0.0]], requires_grad=True)
    loss = batch_hard_triplet(features, torch.tensor([0, 0, 1, 1]), 0.3)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


def test_center_loss_is_the_mean_squared_distance_to_the_centers():
    center = CenterLoss(3, 2, seed=0)
    with torch.no_grad():
        center.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]))
    features = torch.tensor([[1.0, 0.0], [1.0, 3.0]])
    assert center(features, torch.tensor([0, 1])).item() == pytest.approx((1.0 + 4.0) / 2)


def test_the_centers_step_by_the_unweighted_gradient_with_or_without_a_gradient_scaler():
    """One step for both paths: the centers move by their own learning rate times the gradient
    of the unweighted center loss; under a gradient scaler (fp16's) the same, once unscaled."""
    features, labels, weight = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]), 0.0005
    moved = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=1024.0)):
        center = CenterLoss(3, 4, seed=0)
        optimizer = center_optimizer(center, lr=0.5)
        loss = weight * center(features, labels)
        (scaler.scale(loss) if scaler else loss).backward()
        step_centers(center, optimizer, weight, scaler)
        if scaler:
            scaler.update()
        moved.append(center.centers.detach().clone())
    reference = CenterLoss(3, 4, seed=0)
    reference(features, labels).backward()
    expected = reference.centers.detach() - 0.5 * reference.centers.grad
    torch.testing.assert_close(moved[0], expected)
    torch.testing.assert_close(moved[1], expected)
