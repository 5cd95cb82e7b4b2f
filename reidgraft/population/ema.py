"""An exponential moving average of each model's weights, updated after every step:
`ema <- decay * ema + (1 - decay) * model` on the floating entries (BN statistics included),
integer buffers copied. How it starts (`warmup`): `none`, the decay from the first update;
`power`, update t (from 0) uses min(decay, 1 - (1 + t)^(-2/3)), the schedule timm's EMA uses;
`unbiased`, update t (from 1) moves by (1 - decay) / (1 - decay^t), which makes the copy exactly
Adam's bias-corrected average: the decay-weighted mean of every weight seen since the start.
Its batch-norm statistics are estimated anew before it is evaluated
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

WARMUPS = ("none", "power", "unbiased")  # (config/schema.py's EMA_WARMUPS)


class EmaCopies(Participant):
    """One EMA copy per model (one model's memory each), on the model's device, evaluated at
    every evaluation beside its model."""

    name = section = evaluates = "ema"
    evaluates_each_model = True

    def __init__(self, models: Sequence[nn.Module], decay: float, warmup: str = "none", name: str = "ema"):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the EMA decay must lie in [0, 1), got {decay}")
        if warmup not in WARMUPS:
            raise ValueError(f"unknown EMA warm-up {warmup!r}; choose one of: {', '.join(WARMUPS)}")
        self.models, self.decay, self.warmup = list(models), decay, warmup
        self.name = self.section = self.evaluates = name  # "ema", or ema_<decay> for a grid's
        self.updates = 0  # made so far (the warm-up's t)
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

    def decay_at(self, update: int) -> float:
        """The decay of update `update` (counted from 0): the copy keeps this share of itself."""
        if self.warmup == "power":
            return min(self.decay, 1.0 - (1.0 + update) ** (-2.0 / 3.0))
        if self.warmup == "unbiased":  # 1 - rate, rate = (1 - d) / (1 - d^t) for t = update + 1
            return 1.0 - (1.0 - self.decay) / (1.0 - self.decay ** (update + 1))
        return self.decay

    @torch.no_grad()
    def update(self) -> None:
        """One step of every copy toward its model."""
        decay = self.decay_at(self.updates)
        for (floats, model_floats), (ints, model_ints) in self._pairs:
            torch._foreach_lerp_(floats, model_floats, 1.0 - decay)
            for ema, tensor in zip(ints, model_ints, strict=True):
                ema.copy_(tensor)
        self.updates += 1

    def settings(self) -> dict[str, Any]:
        warmup = {"warmup": self.warmup, "updates": self.updates} if self.warmup != "none" else {}
        return {"decay": self.decay, **warmup}

    def after_step(self, step: int, lr_shares: Sequence[float]) -> None:
        self.update()

    def extra_evaluations(self, last: bool, bn_batches: BatchSource) -> list[nn.Module]:
        for ema in self.copies:
            reestimate_batch_norm(ema, bn_batches())
        return self.copies

    def state_dict(self) -> dict[str, Any]:
        return {"copies": [ema.state_dict() for ema in self.copies], "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        copies = state.get("copies") or []
        if len(copies) != len(self.copies):
            raise ValueError("the checkpoint holds no EMA copies to continue; resume without --ema")
        for ema, saved in zip(self.copies, copies, strict=True):
            ema.load_state_dict(saved)
        self.updates = int(state.get("updates", 0))  # (checkpoints before the warm-up: no count)


def grid_name(decay: float) -> str:
    """The name (checkpoint entry, metrics.json section, record prefix) of a grid decay's copies."""
    return f"ema_{decay:g}"


def build(models: list, config: Any, group: Any) -> EmaCopies:
    return EmaCopies(models, config.ema, warmup=config.ema_warmup)


def build_grid(models: list, config: Any, group: Any) -> list[EmaCopies]:
    """The copies of each `ema_grid` decay, beside --ema's."""
    return [
        EmaCopies(models, decay, warmup=config.ema_warmup, name=grid_name(decay)) for decay in config.ema_grid
    ]
