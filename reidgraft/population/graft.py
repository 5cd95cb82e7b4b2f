"""Filter grafting (the papers'): at every epoch end each model takes its scion, from its ring
neighbour (`GraftRing`, or the distributed ring under torchrun) or from itself (noise or its own
filters, `SelfGraft`). The ring itself is `reidgraft.grafting`'s; where the models live decides
which ring (`group.build_ring`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..grafting.weighting import mean_alphas
from .participant import Participant


class Graft(Participant):
    """`graft(completed)` at every epoch end; it returns, per model, its alphas (a neighbour's
    scion) or the number of filters grafted in each layer (noise and internal scions, whose noise
    decays with the epoch)."""

    name = "graft"

    def __init__(self, graft: Callable[[int], Any], *, scion: str, options: dict[str, Any], count: int):
        self._graft, self.scion, self.options, self.count = graft, scion, options, count
        self.record_key = "grafted_filters" if scion != "external" else "alphas"

    def settings(self) -> dict[str, Any]:
        return {"method": self.name, "scion": self.scion, **self.options}

    def exchanges_after(self, completed: int) -> bool:
        return True

    def exchange(self, completed: int) -> Any:
        return self._graft(completed)

    def describe(self, record: dict[str, Any]) -> str | None:
        """Every model's mean alpha (once all K models' alphas are here: not on one rank)."""
        alphas = record.get("alphas")
        if self.record_key != "alphas" or not alphas or len(alphas) != self.count:
            return None
        means = " ".join(f"{v:.3f}" for v in mean_alphas(alphas))
        return f"graft after epoch {record['epoch']}  mean alpha {means}"


def build(models: list, config: Any, group: Any) -> Participant:
    ring = group.build_ring(models, config)
    if ring is None:  # one model: nothing to graft (the baseline, through the same code)
        return Participant()
    # a neighbour's scion does not depend on the epoch; noise decays with it
    graft = ring.graft if config.scion != "external" else (lambda completed: ring.graft())
    return Graft(graft, scion=config.scion, options=config.graft_options(), count=config.models)
