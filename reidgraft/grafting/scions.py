"""Scions from a model itself rather than from its neighbour (CVPR section 3.1, Table 2): each
model grafts Gaussian noise, or its own strongest filters, onto its weakest ones. No model
depends on another, so the same code serves one process and one model per process."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .graft import graft_internal, graft_noise


class SelfGraft:
    """`.graft(epoch)` grafts each model in place, like `GraftRing.graft()`, and returns per model
    the number of filters grafted in each scored tensor.

    Noise is drawn from a generator seeded by (`seeds[k]`, epoch), so a resumed run draws what a
    straight one did.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        scion: str,
        seeds: Sequence[int],
        *,
        threshold: float = 0.1,
        noise_decay: float = 0.975,
    ):
        if scion not in ("noise", "internal"):
            raise ValueError(f"SelfGraft takes the noise or internal scion, not {scion!r}")
        self.models, self.scion, self.seeds = list(models), scion, list(seeds)
        self.threshold, self.noise_decay = threshold, noise_decay

    @torch.no_grad()
    def graft(self, epoch: int = 0) -> list[dict[str, int]]:
        counts = []
        for model, seed in zip(self.models, self.seeds, strict=True):
            state = model.state_dict()
            if self.scion == "noise":
                device = next(iter(state.values())).device
                generator = torch.Generator(device).manual_seed(1_000_003 * seed + epoch)
                new_state, grafted = graft_noise(
                    state, epoch=epoch, threshold=self.threshold, a=self.noise_decay, generator=generator
                )
            else:
                new_state, grafted = graft_internal(state, threshold=self.threshold)
            for key in grafted:  # in place: the optimizer keeps holding these tensors
                state[key].copy_(new_state[key])
            counts.append(grafted)
        return counts
