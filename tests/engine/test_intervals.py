"""What a comparison over a few seeds can tell: the t-interval's coverage, the detectable effect,
the seeds it takes, and the verdict's words."""

import math

import numpy as np
import pytest
from scipy import stats

from reidgraft.engine.intervals import (
    ROUGH_BELOW,
    infer,
    minimum_detectable_effect,
    seeds_needed,
    t_interval,
)


@pytest.mark.parametrize("seeds", [2, 3, 5, 8])
def test_the_t_interval_covers_a_zero_effect_95_percent_of_the_time(seeds):
    """Simulated studies with no true difference and seed-to-seed spread: the interval over seeds
    holds zero in 95% of them (4000 studies: a binomial standard error of 0.34%)."""
    rng = np.random.default_rng(seeds)
    studies = rng.normal(0.0, 0.03, size=(4000, seeds))
    covered = [low <= 0.0 <= high for low, high in map(t_interval, studies)]
    assert np.mean(covered) == pytest.approx(0.95, abs=0.015)


def test_the_t_interval_is_the_textbook_one():
    low, high = t_interval([0.01, 0.03, 0.02])
    half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert (low, high) == pytest.approx((0.02 - half, 0.02 + half))
    assert t_interval([0.02]) is None


@pytest.mark.parametrize("seeds", [2, 3, 5, 8])
def test_a_true_effect_of_the_detectable_size_is_found_80_percent_of_the_time(seeds):
    """Studies whose true mean difference is the minimum detectable effect reject zero with a
    two-sided t-test in 80% of them (20000 studies: standard error 0.28%)."""
    sd = 0.02
    effect = minimum_detectable_effect(sd, seeds)
    rng = np.random.default_rng(100 + seeds)
    studies = rng.normal(effect, sd, size=(20000, seeds))
    rejected = stats.ttest_1samp(studies, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.8, abs=0.012)


def test_the_detectable_effect_is_the_closed_form_for_many_seeds_and_larger_for_few():
    closed = lambda n: (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) / math.sqrt(n)  # noqa: E731
    assert minimum_detectable_effect(1.0, 200) == pytest.approx(closed(200), rel=2e-3)
    assert minimum_detectable_effect(1.0, 2) > 1.1 * closed(2)  # the closed form claims too much
    assert minimum_detectable_effect(3.0, 5) == pytest.approx(3 * minimum_detectable_effect(1.0, 5))
    assert minimum_detectable_effect(1.0, 1) is None


@pytest.mark.parametrize("sd", [0.004, 0.01, 0.025])
def test_seeds_needed_is_the_fewest_that_detect_the_effect(sd):
    seeds = seeds_needed(sd, 0.01)
    assert minimum_detectable_effect(sd, seeds) <= 0.01
    assert seeds == 2 or minimum_detectable_effect(sd, seeds - 1) > 0.01
    assert seeds_needed(0.0, 0.01) == 2


def test_the_verdict_says_helps_hurts_or_cannot_tell():
    helps = infer([0.021, 0.018, 0.025, 0.02, 0.019])
    assert helps.verdict().startswith("grafting helps by +2.06 [") and "rough" not in helps.verdict()
    hurts = infer([-0.03, -0.02, -0.025])
    assert hurts.verdict().startswith("grafting hurts by -2.50 [") and hurts.verdict().endswith(
        "points (rough: 3 seeds)"
    )
    unclear = infer([0.02, -0.01, 0.005, 0.0, 0.01])
    low, high = unclear.interval
    assert low < 0 < high and not unclear.rough
    assert unclear.verdict("c = 5") == (
        f"no difference larger than ±{100 * max(-low, high):.2f} points can be told from noise with "
        f"these 5 seeds (mean +0.50 [{100 * low:+.2f}, {100 * high:+.2f}])"
    )
    assert unclear.mde > max(-low, high) - unclear.mean  # the detectable effect exceeds the half-width


def test_one_seed_gives_no_interval_and_says_so():
    one = infer([0.013])
    assert one.interval is one.sd is one.mde is one.seeds_for_one_point is None
    assert one.rough and ROUGH_BELOW == 5
    assert one.verdict() == (
        "one seed gives no interval over seeds: grafting differed by +1.30 points on it, which "
        "cannot be told from seed-to-seed noise; run more seeds"
    )
    assert one.to_dict()["t_interval95"] is None
    with pytest.raises(ValueError, match="at least one seed"):
        infer([])


def test_the_t_test_p_is_scipys_and_agrees_with_the_interval():
    from scipy import stats

    from reidgraft.engine.intervals import t_interval, t_test_p

    rng = np.random.default_rng(3)
    for _ in range(50):
        values = list(rng.normal(0.5, 1.0, size=int(rng.integers(2, 9))))
        p = t_test_p(values)
        assert p == pytest.approx(stats.ttest_1samp(values, 0.0).pvalue, rel=1e-9)
        low, high = t_interval(values)
        assert (p < 0.05) == (low > 0 or high < 0)
    assert t_test_p([0.3]) is None
    assert t_test_p([0.2, 0.2]) == 0.0 and t_test_p([0.0, 0.0]) == 1.0


def test_holm_by_hand():
    from reidgraft.engine.intervals import holm

    # sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01, then max(0.03, 2 x 0.03), then max(0.06, 1 x 0.04)
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([0.02]) == [0.02] and holm([]) == []
