"""The grafting options, their choices and their defaults, the papers' (A = 0.4, c = 500, 10
bins), written once: every function of the method that takes one of them defaults to the value
here, and the config reads its choices from here. Imports nothing of the method: the criteria
and the weighting import this module, never the other way round."""

from __future__ import annotations

from dataclasses import dataclass

# How much a layer knows (criteria.py), or `fixed`: a constant alpha (supplement Table 4).
CRITERION_NAMES = ("entropy", "entropy_filter_sum", "l1", "fixed")
# Where a model's weak filters get new weights (CVPR Table 2; scions.py).
SCIONS = ("external", "noise", "internal")
# Where an entropy histogram counts the tensor's maximum: in the top bin (torch.histc's rule, the
# default), or nowhere, as the authors' entropy() does (docs/method.md section 1).
TOP_BINS = ("inclusive", "authors")
# External scion: whole layers (the papers') or each layer's lowest-entropy filters (ring.py).
LEVELS = ("layer", "filter")


def check_criterion(name: str) -> str:
    """Return `name` if it is a known criterion, else raise a ValueError listing the valid ones."""
    if name not in CRITERION_NAMES:
        raise ValueError(f"unknown grafting criterion {name!r}; choose one of: {', '.join(CRITERION_NAMES)}")
    return name


def check_adaptive_parameters(A: float, c: float) -> None:
    """Reject coefficients that would let alpha leave [0, 1] or invert its meaning."""
    if not 0.0 <= A <= 1.0:
        raise ValueError(f"A must lie in [0, 1] so that alpha stays in [0, 1], got {A}")
    if c < 0:
        raise ValueError(f"c must be non-negative (a negative c rewards the poorer model), got {c}")


def check_fixed_alpha(value: float) -> float:
    """A constant coefficient, checked to lie in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"fixed_alpha must lie in [0, 1], got {value}")
    return float(value)


@dataclass(frozen=True)
class GraftOptions:
    """How two states are blended. Defaults are the papers' (A = 0.4, c = 500, 10 bins)."""

    criterion: str = "entropy"
    A: float = 0.4
    c: float = 500.0
    bins: int = 10
    fixed_alpha: float = 0.5
    graft_head: bool = True
    top_bin: str = "inclusive"

    def __post_init__(self) -> None:
        if self.top_bin not in TOP_BINS:
            raise ValueError(f"unknown top_bin {self.top_bin!r}; choose one of: {', '.join(TOP_BINS)}")
        check_criterion(self.criterion)
        check_adaptive_parameters(self.A, self.c)
        check_fixed_alpha(self.fixed_alpha)
        if self.bins < 1:
            raise ValueError(f"bins must be a positive integer, got {self.bins}")
