"""The grafting coefficient alpha: how much of its own weights a model keeps.

    W_self_new = alpha * W_self + (1 - alpha) * W_other

Adaptive (paper Eq. 7, as the authors' code computes it):

    alpha = 0.5 + (A / pi) * arctan(c * (H_self - H_other))

The printed Eq. 7 has no `/ pi`; without it alpha leaves (0, 1) for the papers' A = 0.4. With
it alpha stays within 0.5 +- A/2, equals 0.5 for equal information and exceeds 0.5 when the
receiving model holds more, which are the two conditions the paper states. This is a deliberate
choice (docs/method.md section 2).

Defaults A = 0.4, c = 500 are the papers' runs; with them alpha is nearly a 0.3 / 0.7 switch.
The authors later advised c around 1-10 and A in 0.2-0.4. With the `l1` criterion the score
differences are in the hundreds, so `c` must be scaled down accordingly (e.g. c = 0.01).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .options import GraftOptions, check_adaptive_parameters, check_fixed_alpha


def adaptive_alpha(
    h_self: float, h_other: float, A: float = GraftOptions.A, c: float = GraftOptions.c
) -> float:
    """Share of its own weights the receiving model keeps, from both models' information."""
    return 0.5 + (A / math.pi) * math.atan(c * (h_self - h_other))


def fixed_alpha(value: float = GraftOptions.fixed_alpha) -> float:
    """A constant coefficient (0.5 = plain averaging, supplement Table 4), checked to lie in [0, 1]."""
    return check_fixed_alpha(value)


def alpha_share(options: GraftOptions, score_own: float | None, score_other: float | None) -> float:
    """The share `d` of alpha = 0.5 + d for one layer, from the two models' scores (the fixed
    alpha's with the `fixed` criterion, which scores nothing)."""
    if options.criterion == "fixed":
        return options.fixed_alpha - 0.5
    return adaptive_alpha(score_own, score_other, options.A, options.c) - 0.5


def mean_alphas(alphas: Sequence[Mapping[str, float]]) -> list[float]:
    """Each model's alpha averaged over its layers, from a graft's alphas (one mapping per model):
    what the console and TensorBoard show of a graft."""
    return [sum(layers.values()) / len(layers) for layers in alphas]


__all__ = ["adaptive_alpha", "alpha_share", "check_adaptive_parameters", "fixed_alpha", "mean_alphas"]
