"""The population methods behind one interface: what K models trained side by side exchange.

The trainer calls, in this order: `step_loss` for each model's loss term of a step (DML),
`after_step` once all K models have stepped (PAPA's pull), and at an epoch end, after the
models were evaluated and saved, `exchange` when `exchanges_after(epoch)` (a graft, PAPA-all's
average). What an exchange did is filed in the epoch's record under `record_key`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..grafting.scions import SelfGraft
from .averaging import average_into_
from .dml import mutual_loss
from .options import PAPA_EVERY, PAPA_EVERY_EPOCHS, PAPA_RATE


class Population:
    """No exchange: K independent models (`--population none`), the base of every method."""

    name = "none"
    shared_batch = False  # every model must see the same batch of images
    record_key = "exchange"

    def settings(self) -> dict[str, Any]:
        """The method and its settings, for metrics.json."""
        return {"method": self.name}

    def step_loss(self, k: int, logits: Sequence[Tensor]) -> Tensor | None:
        """Model k's extra loss term for this step, given every model's logits (None: none)."""
        return None

    def after_step(self, step: int, lr_shares: Sequence[float]) -> None:
        """After every model took step `step` (0-based within the epoch); `lr_shares`: each
        model's learning rate as a share of its initial one."""

    def exchanges_after(self, epoch: int) -> bool:
        """Whether the models exchange after `epoch` epochs were completed."""
        return False

    def exchange(self, epoch: int) -> Any:
        """The epoch end's exchange (in place); returns what to file under `record_key`."""
        return None


class Graft(Population):
    """Filter grafting (the papers'): `ring` (a `GraftRing`, `SelfGraft` or a distributed ring)
    at every epoch end."""

    name = "graft"

    def __init__(self, ring, *, scion: str, options: dict[str, Any]):
        self.ring, self.scion, self.options = ring, scion, options
        self.record_key = "grafted_filters" if scion != "external" else "alphas"

    def settings(self) -> dict[str, Any]:
        return {"method": self.name, "scion": self.scion, **self.options}

    def exchanges_after(self, epoch: int) -> bool:
        return True

    def exchange(self, epoch: int) -> Any:
        """Per model, its alphas (a neighbour's scion), or the number of filters grafted in each
        layer (noise and internal scions, whose noise decays with the epoch)."""
        if isinstance(self.ring, SelfGraft):
            return self.ring.graft(epoch)
        return self.ring.graft()


class MutualLearning(Population):
    """DML: every model sees the same batch and adds `weight` x its mutual-learning term."""

    name = "dml"
    shared_batch = True

    def __init__(self, *, weight: float = 1.0, temperature: float = 1.0):
        self.weight, self.temperature = weight, temperature

    def settings(self) -> dict[str, Any]:
        return {"method": self.name, "dml_weight": self.weight, "dml_temperature": self.temperature}

    def step_loss(self, k: int, logits: Sequence[Tensor]) -> Tensor:
        return self.weight * mutual_loss(logits, k, self.temperature)


class PopulationAveraging(Population):
    """PAPA (Jolicoeur-Martineau et al., TMLR 2024) on the models' floating entries.

    gradual: every `every` steps of an epoch, each model moves toward the population mean by
      `rate` x its learning rate's share of its initial one (the authors' linear scaling);
    all: after every `every_epochs` epochs, every model is replaced by the mean;
    pairs: after every `every_epochs` epochs, the models are drawn into disjoint pairs (seeded
      by `seed` and the epoch; with K odd one model sits out) and each pair replaced by its mean.
    """

    name = "papa"
    record_key = "averaged"

    def __init__(
        self, models: Sequence[nn.Module], *, mode: str = "gradual", rate: float = PAPA_RATE,
        every: int = PAPA_EVERY, every_epochs: int = PAPA_EVERY_EPOCHS, seed: int = 0,
    ):  # fmt: skip
        self.models, self.mode, self.rate = list(models), mode, rate
        self.every, self.every_epochs, self.seed = every, every_epochs, seed

    def settings(self) -> dict[str, Any]:
        settings = {"method": self.name, "papa_mode": self.mode}
        if self.mode == "gradual":
            return settings | {"papa_rate": self.rate, "papa_every": self.every, "lr_scaled": True}
        return settings | {"papa_every_epochs": self.every_epochs}

    def after_step(self, step: int, lr_shares: Sequence[float]) -> None:
        if self.mode == "gradual" and (step + 1) % self.every == 0:
            average_into_(self.models, [self.rate * share for share in lr_shares])

    def exchanges_after(self, epoch: int) -> bool:
        return self.mode != "gradual" and epoch % self.every_epochs == 0

    def exchange(self, epoch: int) -> list[list[int]]:
        """The groups averaged, as lists of model numbers."""
        if self.mode == "all":
            groups = [list(range(len(self.models)))]
        else:
            generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
            order = torch.randperm(len(self.models), generator=generator).tolist()
            groups = [sorted(order[i : i + 2]) for i in range(0, len(order) - 1, 2)]
        for group in groups:
            average_into_([self.models[k] for k in group])
        return groups
