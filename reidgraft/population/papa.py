"""PAPA, population parameter averaging (Jolicoeur-Martineau et al., TMLR 2024), on the models'
floating entries (docs/method.md section 10):

    gradual: every `every` steps of an epoch, each model moves toward the population mean by
      `rate` x its learning rate's share of its initial one (the authors' linear scaling); with
      `closes`, the rate is set from the run's length instead: the one at which the pulls alone
      (at the initial learning rate) close that share of the gap over the run;
    all: after every `every_epochs` epochs, every model is replaced by the mean;
    pairs: after every `every_epochs` epochs, the models are drawn into disjoint pairs (seeded
      by `seed` and the epoch; with K odd one model sits out) and each pair replaced by its mean.

At the last epoch the models' weight average (BN statistics re-estimated) is evaluated beside
them: what PAPA returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .averaging import average_into_, weight_average
from .options import PAPA_EVERY, PAPA_EVERY_EPOCHS, PAPA_RATE
from .participant import BatchSource, Participant


class PopulationAveraging(Participant):
    name = "papa"
    record_key = "averaged"
    evaluates = "average"

    def __init__(
        self, models: Sequence[nn.Module], *, mode: str = "gradual", rate: float = PAPA_RATE,
        every: int = PAPA_EVERY, every_epochs: int = PAPA_EVERY_EPOCHS, seed: int = 0,
        closes: float | None = None,
    ):  # fmt: skip
        self.models, self.mode, self.rate, self.closes = list(models), mode, rate, closes
        self.every, self.every_epochs, self.seed = every, every_epochs, seed
        self.pulls: int | None = None  # in the run, once it is planned

    def plan_run(self, epochs: int, steps_per_epoch: int) -> None:
        self.pulls = epochs * (steps_per_epoch // self.every)
        if self.closes is not None:
            self.rate = 1.0 - (1.0 - self.closes) ** (1.0 / max(1, self.pulls))

    def settings(self) -> dict[str, Any]:
        settings = {"method": self.name, "papa_mode": self.mode}
        if self.mode == "gradual":
            scaled = {"papa_closes": self.closes, "pulls": self.pulls} if self.closes is not None else {}
            return settings | {"papa_rate": self.rate, "papa_every": self.every, "lr_scaled": True, **scaled}
        return settings | {"papa_every_epochs": self.every_epochs}

    def after_step(self, step: int, lr_shares: Sequence[float]) -> None:
        if self.mode == "gradual" and (step + 1) % self.every == 0:
            average_into_(self.models, [self.rate * share for share in lr_shares])

    def exchanges_after(self, completed: int) -> bool:
        return self.mode != "gradual" and completed % self.every_epochs == 0

    def exchange(self, completed: int) -> list[list[int]]:
        """The groups averaged, as lists of model numbers."""
        if self.mode == "all":
            groups = [list(range(len(self.models)))]
        else:
            generator = torch.Generator().manual_seed(self.seed * 1000 + completed)
            order = torch.randperm(len(self.models), generator=generator).tolist()
            groups = [sorted(order[i : i + 2]) for i in range(0, len(order) - 1, 2)]
        for group in groups:
            average_into_([self.models[k] for k in group])
        return groups

    def extra_evaluations(self, last: bool, bn_batches: BatchSource) -> list[nn.Module]:
        return [weight_average(self.models, bn_batches())] if last else []

    def state_dict(self) -> dict[str, Any]:
        # a rate scaled to the run keeps the length it was planned for, should a resume ask for more
        return {"rate": self.rate, "pulls": self.pulls} if self.closes is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.closes is not None and "rate" in state:
            self.rate, self.pulls = float(state["rate"]), int(state["pulls"])


def build(models: list, config: Any, group: Any) -> PopulationAveraging:
    return PopulationAveraging(
        models, mode=config.papa_mode, rate=config.papa_rate, every=config.papa_every,
        every_epochs=config.papa_every_epochs, seed=config.seed, closes=config.papa_closes,
    )  # fmt: skip
