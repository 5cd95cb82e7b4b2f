"""The grafting options and their defaults, the papers' (A = 0.4, c = 500, 10 bins), written
once: every function of the method that takes one of them defaults to the value here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GraftOptions:
    """How two states are blended. Defaults are the papers' (A = 0.4, c = 500, 10 bins)."""

    criterion: str = "entropy"
    A: float = 0.4
    c: float = 500.0
    bins: int = 10
    fixed_alpha: float = 0.5
    graft_head: bool = True

    def __post_init__(self) -> None:
        # Imported here: the criteria and the weighting read their defaults from this class.
        from .criteria import check_criterion
        from .weighting import check_adaptive_parameters, fixed_alpha

        check_criterion(self.criterion)
        check_adaptive_parameters(self.A, self.c)
        fixed_alpha(self.fixed_alpha)
        if self.bins < 1:
            raise ValueError(f"bins must be a positive integer, got {self.bins}")

    def coefficient(self, score_own: float | None, score_other: float | None) -> float:
        """The share `d` of alpha = 0.5 + d, from the two models' scores of one layer."""
        if self.criterion == "fixed":
            return self.fixed_alpha - 0.5
        from .weighting import adaptive_alpha

        return adaptive_alpha(score_own, score_other, self.A, self.c) - 0.5
