"""An exponential moving average of each model's weights, updated after every step:
`ema <- decay * ema + (1 - decay) * model` on the floating entries (BN statistics included),
integer buffers copied. Its batch-norm statistics are estimated anew before it is evaluated
(`averaging.reestimate_batch_norm`). Decay 0 keeps a copy of the model itself."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn


class EmaCopies:
    """One EMA copy per model (one model's memory each), on the model's device."""

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

    def state_dicts(self) -> list[dict]:
        return [ema.state_dict() for ema in self.copies]

    def load_state_dicts(self, states: Sequence[dict]) -> None:
        for ema, state in zip(self.copies, states, strict=True):
            ema.load_state_dict(state)
