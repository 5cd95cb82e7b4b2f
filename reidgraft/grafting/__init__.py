"""Filter grafting: the method, importing torch alone (no data, no files, nothing of ours).

Criteria (how much a layer knows), weighting (how much of itself a model keeps), grafting one
state into another, the K-model ring, the other scion sources, and the grafting+ distillation
loss. See GRAFTING.md for every choice the papers leave open.
"""

from .criteria import (
    CRITERION_NAMES,
    filter_entropies,
    filter_entropy_sum,
    filter_l1_norms,
    l1_norm,
    layer_entropy,
)
from .distill import distillation_loss, teacher_probabilities
from .graft import (
    GraftOptions,
    entry_alphas,
    graft_filters,
    graft_internal,
    graft_noise,
    graft_state,
    head_keys,
    scored_keys,
)
from .ring import (
    GraftRing,
    RingExchangeError,
    distributed_graft,
    peer_lost,
    ring_exchange,
    ring_learning_rates,
)
from .scions import SCIONS, SelfGraft
from .weighting import adaptive_alpha

__all__ = [
    "CRITERION_NAMES",
    "GraftOptions",
    "GraftRing",
    "RingExchangeError",
    "SCIONS",
    "SelfGraft",
    "peer_lost",
    "adaptive_alpha",
    "distillation_loss",
    "distributed_graft",
    "entry_alphas",
    "filter_entropies",
    "filter_entropy_sum",
    "filter_l1_norms",
    "graft_filters",
    "graft_internal",
    "graft_noise",
    "graft_state",
    "head_keys",
    "l1_norm",
    "ring_exchange",
    "ring_learning_rates",
    "layer_entropy",
    "scored_keys",
    "teacher_probabilities",
]
