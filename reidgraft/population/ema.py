"""An exponential moving average of each model's weights, updated after every step:
`ema <- decay * ema + (1 - decay) * model` on the floating entries (BN statistics included),
integer buffers copied. Its batch-norm statistics are estimated anew before it is evaluated
(`averaging.reestimate_batch_norm`). Decay 0 keeps a copy of the model itself. A companion of
any population method (`--ema DECAY`): it averages the weights the method left after each step."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .averaging import reestimate_batch_norm
from .participant import BatchSource, Participant


class EmaCopies(Participant):
    """One EMA copy per model (one model's memory each), on the model's device, evaluated at
    every evaluation beside its model."""

    name = section = evaluates = "ema"
    evaluates_each_model = True

    def __init__(self, models: Sequence[nn.Module], decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the EMA decay must lie in [0, 1), got {decay}")
        self.models, self.decay = list(models), decay
        self.copies = [copy.deepcopy(model).eval() for model in self.models]
        for ema in self.copies:
            ema.requires_grad_(False)
        self._pairs = [self._entries(model, ema) for model, ema in zip(self.models, self.copies, strict=True)]

    @staticmethod
    def _entries(model: nn.Module, ema: nn.Module):
        """(floating ema tensors, theirs), (integer ema tensors, theirs): found once, as views."""
        own, theirs = {}, model.state_dict()
        seen: set[int] = set()  # tied parameters appear under several keys: moved once
        for key, tensor in ema.state_dict().items():
            if tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                own[key] = tensor
        floats = [key for key, tensor in own.items() if tensor.is_floating_point()]
        ints = [key for key in own if key not in floats]
        return ([own[k] for k in floats], [theirs[k] for k in floats]), (
            [own[k] for k in ints],
            [theirs[k] for k in ints],
        )

    @torch.no_grad()
    def update(self) -> None:
        """One step of every copy toward its model."""
        for (floats, model_floats), (ints, model_ints) in self._pairs:
            torch._foreach_lerp_(floats, model_floats, 1.0 - self.decay)
            for ema, tensor in zip(ints, model_ints, strict=True):
                ema.copy_(tensor)

    def settings(self) -> dict[str, Any]:
        return {"decay": self.decay}

    def after_step(self, step: int, lr_shares: Sequence[float]) -> None:
        self.update()

    def extra_evaluations(self, last: bool, bn_batches: BatchSource) -> list[nn.Module]:
        for ema in self.copies:
            reestimate_batch_norm(ema, bn_batches())
        return self.copies

    def state_dict(self) -> dict[str, Any]:
        return {"copies": [ema.state_dict() for ema in self.copies]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        copies = state.get("copies") or []
        if len(copies) != len(self.copies):
            raise ValueError("the checkpoint holds no EMA copies to continue; resume without --ema")
        for ema, saved in zip(self.copies, copies, strict=True):
            ema.load_state_dict(saved)


def build(models: list, config: Any, group: Any) -> EmaCopies:
    return EmaCopies(models, config.ema)
