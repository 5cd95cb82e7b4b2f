"""Filter grafting: the method, importing torch alone (no data, no files, nothing of ours).

Criteria (how much a layer knows), weighting (how much of itself a model keeps), grafting one
state into another, the K-model ring, the other scion sources, and the grafting+ distillation
loss. See docs/method.md for every choice the papers leave open.

Names are loaded from their module on first use (PEP 562), so that reading the options alone
(`reidgraft.grafting.options`, which the config does) does not load the ring and its
torch.distributed machinery.
"""

from __future__ import annotations

import importlib

# public name -> the module of this package that defines it
_EXPORTS = {
    "CRITERION_NAMES": "options",
    "GraftOptions": "options",
    "LEVELS": "options",
    "SCIONS": "options",
    "filter_entropies": "criteria",
    "filter_entropy_sum": "criteria",
    "filter_l1_norms": "criteria",
    "l1_norm": "criteria",
    "layer_entropy": "criteria",
    "distillation_loss": "distill",
    "teacher_probabilities": "distill",
    "entry_alphas": "graft",
    "graft_filters": "graft",
    "graft_internal": "graft",
    "graft_noise": "graft",
    "graft_state": "graft",
    "head_keys": "graft",
    "scored_keys": "graft",
    "GraftRing": "ring",
    "RingExchangeError": "ring",
    "distributed_graft": "ring",
    "peer_lost": "ring",
    "ring_exchange": "ring",
    "ring_learning_rates": "ring",
    "SelfGraft": "scions",
    "adaptive_alpha": "weighting",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # found once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
