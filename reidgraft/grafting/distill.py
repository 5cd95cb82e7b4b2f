"""Grafting+ (journal section 3.5): knowledge distillation from frozen teachers into each student.

    L = CE(student, y) + tau^2 * soft-CE(mean_m softmax(t_m / tau), log_softmax(s / tau))

The teachers' PROBABILITIES are averaged before the soft cross-entropy (paper Eq. 10-11); the
authors' unpublished code is said to sum one term per teacher instead, which scales the loss
with the number of teachers. reidgraft follows the paper. Paper Eq. 11 sums over samples;
here the batch mean is taken, like the cross-entropy beside it, so the weight of the term does
not change with the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def teacher_probabilities(teacher_logits: Sequence[Tensor], tau: float = 2.0) -> Tensor:
    """Mean over teachers of softmax(logits / tau), without gradient."""
    if len(teacher_logits) == 0:
        raise ValueError("distillation needs at least one teacher's logits")
    first = teacher_logits[0]
    for m, logits in enumerate(teacher_logits):
        if logits.shape != first.shape:
            raise ValueError(
                f"teacher {m} gives logits of shape {tuple(logits.shape)}, teacher 0 {tuple(first.shape)}"
            )
    stacked = torch.stack([logits.detach().float() for logits in teacher_logits])
    return torch.softmax(stacked / tau, dim=-1).mean(dim=0)


def distillation_loss(student_logits: Tensor, teacher_logits: Sequence[Tensor], tau: float = 2.0) -> Tensor:
    """tau^2 * soft cross-entropy between the teachers' mean probabilities and the student's."""
    if tau <= 0:
        raise ValueError(f"distillation temperature tau must be positive, got {tau}")
    targets = teacher_probabilities(teacher_logits, tau)
    if targets.shape != student_logits.shape:
        raise ValueError(
            f"student logits of shape {tuple(student_logits.shape)} do not match the teachers' "
            f"{tuple(targets.shape)} (same batch and number of classes needed)"
        )
    log_student = torch.log_softmax(student_logits.float() / tau, dim=-1)
    return tau**2 * -(targets * log_student).sum(dim=-1).mean()
