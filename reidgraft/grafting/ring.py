"""The K-model grafting ring of Algorithm 1, in one process.

At the end of every epoch model k receives from model k-1 (model 0 from model K-1):
`W_k <- alpha W_k + (1 - alpha) W_{k-1}`, every model blending with its neighbour's PRE-graft
weights. K = 1 is the baseline and does nothing.

Parallel semantics without K copies: all scores, and so all alphas, are taken first from the
pre-graft weights. Models are then blended in place from K-1 down to 1, each reading a
neighbour that has not been written yet, and model 0 last from one snapshot of model K-1's
pre-graft weights. That is one state copy instead of K.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .graft import (
    GraftOptions,
    GraftPlan,
    blend_,
    plan_filter_graft,
    plan_layer_graft,
    prepare,
    score_state,
)

LEVELS = ("layer", "filter")


def ring_learning_rates(base_lr: float, count: int) -> list[float]:
    """Initial learning rates that make the K models differ (GRAFTING.md section 5).

    Cosine-spaced: model k starts at `base_lr * (1 + cos(pi * (K - 1 - k) / K)) / 2`, so the
    last model keeps `base_lr` (K = 4: 0.146, 0.5, 0.854, 1.0 times it). One model keeps it too.
    """
    if count < 1:
        raise ValueError(f"need at least one model, got {count}")
    return [base_lr * (1 + math.cos(math.pi * (count - 1 - k) / count)) / 2 for k in range(count)]


class GraftRing:
    """Graft K models into each other in a ring, in place, on whatever device and dtype they are.

    Options are those of `graft_state` (criterion, A, c, bins, fixed_alpha, graft_head), plus
    `level="filter"` with `fraction` for the filter-level ablation (supplement section 2).
    Models whose states cannot be grafted raise ValueError here, before any weight changes.
    """

    def __init__(
        self, models: Sequence[nn.Module], *, level: str = "layer", fraction: float = 0.2, **options
    ):
        if len(models) == 0:
            raise ValueError("GraftRing needs at least one model")
        if level not in LEVELS:
            raise ValueError(f"unknown grafting level {level!r}; choose one of: {', '.join(LEVELS)}")
        self.models = list(models)
        self.level = level
        self.fraction = fraction
        self.options = GraftOptions(**options)
        self._check(self._states())

    def __len__(self) -> int:
        return len(self.models)

    def _states(self) -> list[dict[str, Tensor]]:
        return [model.state_dict() for model in self.models]

    def _check(self, states: list[dict[str, Tensor]]) -> tuple[list[str], set[str]]:
        """Check every pair of neighbours; return the scored keys and the excluded head keys."""
        keys, excluded = [], set()
        for k in range(len(states) if len(states) > 1 else 0):
            what = f"model {k} <- model {(k - 1) % len(states)}"
            keys, excluded = prepare(states[k], states[k - 1], self.options, what=what)
        return keys, excluded

    @torch.no_grad()
    def graft(self) -> list[dict[str, float]]:
        """Run one ring graft; return, for each model, the alpha of each scored tensor."""
        if len(self.models) == 1:
            return [{}]
        states = self._states()
        plans = self._plan(states, *self._check(states))

        last = len(states) - 1
        snapshot = {key: states[last][key].clone() for key in plans[0].weights}
        for k in range(last, -1, -1):
            source = snapshot if k == 0 else states[k - 1]
            done: set[int] = set()
            for key, (w_own, w_other) in plans[k].weights.items():
                tensor = states[k][key]
                # Tied parameters appear under several keys; blend their storage once.
                if tensor.data_ptr() in done:
                    continue
                done.add(tensor.data_ptr())
                blend_(tensor, source[key], w_own, w_other)
        return [plan.alphas for plan in plans]

    def _plan(self, states: list[dict[str, Tensor]], keys: list[str], excluded: set[str]) -> list[GraftPlan]:
        """Each model's plan against its neighbour, all from pre-graft weights."""
        count = len(states)
        if self.level == "filter":
            return [
                plan_filter_graft(states[k], states[k - 1], keys, self.options, self.fraction)
                for k in range(count)
            ]
        scores = [score_state(state, keys, self.options) for state in states]
        return [
            plan_layer_graft(states[k], scores[k], scores[k - 1], keys, excluded, self.options)
            for k in range(count)
        ]
