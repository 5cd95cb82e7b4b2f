import math

import pytest
import torch

from reidgraft.grafting import distillation_loss


def softmax(values, tau):
    exps = [math.exp(v / tau) for v in values]
    return [e / sum(exps) for e in exps]


def test_matches_hand_computation_with_averaged_teacher_probabilities():
    student, t1, t2, tau = [1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [0.0, 0.5, 0.0], 2.0
    target = [(a + b) / 2 for a, b in zip(softmax(t1, tau), softmax(t2, tau))]
    log_student = [math.log(p) for p in softmax(student, tau)]
    expected = tau**2 * -sum(p * q for p, q in zip(target, log_student))
    loss = distillation_loss(torch.tensor([student]), [torch.tensor([t1]), torch.tensor([t2])], tau)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_batch_mean_and_identical_teachers_count_once():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    one = distillation_loss(student, [teacher])
    assert distillation_loss(student, [teacher, teacher.clone()]).item() == pytest.approx(one.item())
    per_sample = [distillation_loss(student[i : i + 1], [teacher[i : i + 1]]) for i in range(4)]
    assert one.item() == pytest.approx(sum(p.item() for p in per_sample) / 4, rel=1e-6)


def test_tau_squared_factor():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    tau = 4.0
    soft_ce = -(torch.softmax(teacher / tau, -1) * torch.log_softmax(student / tau, -1)).sum(-1).mean()
    assert distillation_loss(student, [teacher], tau).item() == pytest.approx(16 * soft_ce.item(), rel=1e-6)


def test_gradient_reaches_the_student_only():
    student = torch.randn(2, 4, requires_grad=True)
    teacher = torch.randn(2, 4, requires_grad=True)
    distillation_loss(student, [teacher]).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one teacher"):
        distillation_loss(torch.randn(2, 3), [])
    with pytest.raises(ValueError, match="teacher 1 gives logits of shape"):
        distillation_loss(torch.randn(2, 3), [torch.randn(2, 3), torch.randn(2, 4)])
    with pytest.raises(ValueError, match="do not match the teachers"):
        distillation_loss(torch.randn(2, 5), [torch.randn(2, 3)])
    with pytest.raises(ValueError, match="tau must be positive"):
        distillation_loss(torch.randn(2, 3), [torch.randn(2, 3)], tau=0)
