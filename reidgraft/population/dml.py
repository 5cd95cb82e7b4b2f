"""Deep mutual learning (Zhang, Xiang, Hospedales and Lu, CVPR 2018): every model of the
population also learns from its peers' predictions on the same batch.

    L_k = task loss_k + weight * T^2 * mean over peers j != k of KL(p_j || p_k),
    p = softmax(logits / T), the peers' p_j detached

The paper sums the KL over the K - 1 peers; the mean keeps the term's weight independent of K
(the two agree for K = 2, the paper's main setting). T^2 keeps the gradient's scale as T
changes (as in distillation, `grafting/distill.py`); at the default T = 1 it is 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .participant import Participant


def mutual_loss(logits: Sequence[Tensor], k: int, temperature: float = 1.0) -> Tensor:
    """Model k's mutual-learning term: the mean over its peers of KL(peer || model k) on the
    softmax at `temperature`, averaged over the batch, times temperature^2. Gradients reach
    model k's logits only."""
    if len(logits) < 2:
        raise ValueError("mutual learning needs at least two models' logits")
    if temperature <= 0:
        raise ValueError(f"the mutual-learning temperature must be positive, got {temperature}")
    own = torch.log_softmax(logits[k].float() / temperature, dim=-1)
    terms = []
    for j, peer in enumerate(logits):
        if j == k:
            continue
        if peer.shape != logits[k].shape:
            raise ValueError(
                f"model {j}'s logits {tuple(peer.shape)} do not match model {k}'s {tuple(logits[k].shape)}"
            )
        target = torch.log_softmax(peer.detach().float().to(own.device) / temperature, dim=-1)
        terms.append((target.exp() * (target - own)).sum(dim=-1).mean())
    return temperature**2 * torch.stack(terms).mean()


class MutualLearning(Participant):
    """DML: every model sees the same batch and adds `weight` x its mutual-learning term."""

    name = "dml"

    def __init__(self, *, weight: float = 1.0, temperature: float = 1.0):
        self.weight, self.temperature = weight, temperature

    def settings(self) -> dict[str, Any]:
        return {"method": self.name, "dml_weight": self.weight, "dml_temperature": self.temperature}

    def step_loss(self, k: int, logits: Sequence[Tensor | None]) -> Tensor:
        if any(peer is None for peer in logits):
            raise ValueError(
                "mutual learning needs every model's logits on one batch (its spec shares a batch)"
            )
        return self.weight * mutual_loss(logits, k, self.temperature)


def build(models: list, config: Any, group: Any) -> MutualLearning:
    return MutualLearning(weight=config.dml_weight, temperature=config.dml_temperature)
