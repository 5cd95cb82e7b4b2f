"""What a comparison over a few seeds can tell: the per-seed paired differences, their mean and
a t-interval over seeds (the primary interval: the seed, meaning initialisation and data order,
is the unit that is replicated), the smallest effect the run could have detected, and how many
seeds it would take to detect a given one.

The t-interval treats each seed's difference (averaged over the test queries) as one draw;
with fewer than ROUGH_BELOW seeds its width rests on a poorly known spread, and with one seed
there is no spread at all, so no interval over seeds. The query bootstrap stays as a secondary
column (`comparison.bootstrap_difference`): it resamples queries, and seeds when there are
several, and it is too narrow when seed-to-seed variation dominates.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

ROUGH_BELOW = 5  # seeds: below this the report calls the interval rough
CONFIDENCE = 0.95
POWER = 0.8
MOST_SEEDS = 10_000  # seeds_needed stops looking here


def t_interval(differences: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The two-sided t-interval of the mean of the per-seed differences; None with one seed."""
    n = len(differences)
    if n < 2:
        return None
    mean = statistics.fmean(differences)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return mean - half, mean + half


def minimum_detectable_effect(
    sd: float, seeds: int, confidence: float = CONFIDENCE, power: float = POWER
) -> float | None:
    """The smallest true mean difference that a two-sided one-sample t-test over `seeds` per-seed
    differences of spread `sd`, at level 1 - `confidence`, detects with probability `power`: the
    noncentrality at which the noncentral t reaches that power, times sd / sqrt(n). (The usual
    closed form (t_{1-a/2} + t_{power}) sd / sqrt(n) is short by 14% at 2 seeds.) None below 2
    seeds."""
    if seeds < 2:
        return None
    dof = seeds - 1
    critical = stats.t.ppf((1 + confidence) / 2, dof)

    def shortfall(noncentrality: float) -> float:
        # the lower tail's share is negligible here, and scipy returns nan for it far out
        lower = float(np.nan_to_num(stats.nct.cdf(-critical, dof, noncentrality)))
        return stats.nct.sf(critical, dof, noncentrality) + lower - power

    closed = stats.t.ppf((1 + confidence) / 2, dof) + stats.t.ppf(power, dof)
    noncentrality = optimize.brentq(shortfall, 0.0, 4 * closed)
    return noncentrality * sd / math.sqrt(seeds)


def seeds_needed(
    sd: float, effect: float, confidence: float = CONFIDENCE, power: float = POWER
) -> int | None:
    """The fewest seeds whose minimum detectable effect is at most `effect` (for this spread);
    None when even MOST_SEEDS would not do or the spread is unknown."""
    if not sd > 0:
        return 2 if sd == 0 else None
    # t's quantiles exceed the normal's, so the normal closed form's count is a lower bound
    z = stats.norm.ppf((1 + confidence) / 2) + stats.norm.ppf(power)
    start = max(2, math.floor((z * sd / effect) ** 2))
    for seeds in range(start, MOST_SEEDS + 1):
        if minimum_detectable_effect(sd, seeds, confidence, power) <= effect:
            return seeds
    return None


@dataclass(frozen=True)
class SeedInference:
    """A contrast's inference over seeds (fractions, like the scores)."""

    per_seed: list[float]  # each seed's difference, averaged over the test queries (images)
    mean: float
    sd: float | None  # of the per-seed differences; None with one seed
    interval: tuple[float, float] | None  # the 95% t-interval; None with one seed
    mde: float | None  # minimum detectable effect at 80% power
    seeds_for_one_point: int | None  # seeds needed to detect 0.01 (one point) at this spread
    p: float | None = None  # two-sided one-sample t-test of a zero mean; None with one seed

    @property
    def rough(self) -> bool:
        return len(self.per_seed) < ROUGH_BELOW

    def verdict(self, what: str = "grafting") -> str:
        """One line in plain words: helps, hurts, or no difference that these seeds can tell."""
        if self.interval is None:
            return (
                f"one seed gives no interval over seeds: {what} differed by {100 * self.mean:+.2f} "
                "points on it, which cannot be told from seed-to-seed noise; run more seeds"
            )
        low, high = (100 * v for v in self.interval)
        shown = f"{100 * self.mean:+.2f} [{low:+.2f}, {high:+.2f}]"
        rough = f" (rough: {len(self.per_seed)} seeds)" if self.rough else ""
        if low > 0:
            return f"{what} helps by {shown} points{rough}"
        if high < 0:
            return f"{what} hurts by {shown} points{rough}"
        half = max(abs(low), abs(high))
        return (
            f"no difference larger than ±{half:.2f} points can be told from noise with these "
            f"{len(self.per_seed)} seeds (mean {shown}){rough}"
        )

    def to_dict(self) -> dict:
        return {
            "per_seed": self.per_seed, "mean": self.mean, "sd": self.sd,
            "t_interval95": list(self.interval) if self.interval else None, "rough": self.rough,
            "mde80": self.mde, "seeds_for_one_point": self.seeds_for_one_point, "p": self.p,
        }  # fmt: skip


def infer(per_seed: Sequence[float]) -> SeedInference:
    """The seed-level inference of one contrast's per-seed differences."""
    per_seed = [float(v) for v in per_seed]
    if not per_seed:
        raise ValueError("a contrast needs at least one seed")
    sd = statistics.stdev(per_seed) if len(per_seed) > 1 else None
    return SeedInference(
        per_seed,
        statistics.fmean(per_seed),
        sd,
        t_interval(per_seed),
        None if sd is None else minimum_detectable_effect(sd, len(per_seed)),
        None if sd is None else seeds_needed(sd, 0.01),
        t_test_p(per_seed),
    )


def t_test_p(per_seed: Sequence[float]) -> float | None:
    """The two-sided p-value of a one-sample t-test of a zero mean over the per-seed differences
    (the test the t-interval inverts: p < 0.05 exactly when the 95% interval leaves out 0); None
    with one seed. Identical differences: 0 when they are not zero, 1 when they are."""
    if len(per_seed) < 2:
        return None
    sd = statistics.stdev(per_seed)
    mean = statistics.fmean(per_seed)
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    t = mean / (sd / math.sqrt(len(per_seed)))
    return float(2 * stats.t.sf(abs(t), len(per_seed) - 1))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: no test, left out of the family
    and of its size): the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_j),
    so rejecting where the adjusted p is under alpha keeps the family-wise error at alpha."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted
