import math
import random

import pytest

from reidgraft.grafting import adaptive_alpha
from reidgraft.grafting.weighting import check_adaptive_parameters, fixed_alpha


def test_hand_computed_value():
    # arctan(1) = pi / 4, so alpha = 0.5 + (0.4 / pi) * (pi / 4) = 0.6.
    assert adaptive_alpha(2.0, 1.0, A=0.4, c=1.0) == pytest.approx(0.6, abs=1e-15)
    assert adaptive_alpha(1.0, 2.0, A=0.4, c=1.0) == pytest.approx(0.4, abs=1e-15)


def test_equal_information_gives_one_half():
    assert adaptive_alpha(1.7, 1.7) == 0.5


@pytest.mark.parametrize("A", [0.0, 0.2, 0.4, 1.0])
def test_bounds_and_symmetry(A):
    rng = random.Random(0)
    for _ in range(500):
        a, b = rng.uniform(0, 3), rng.uniform(0, 3)
        c = rng.choice([0.5, 5.0, 500.0])
        alpha = adaptive_alpha(a, b, A=A, c=c)
        assert 0.5 - A / 2 <= alpha <= 0.5 + A / 2
        assert alpha + adaptive_alpha(b, a, A=A, c=c) == pytest.approx(1.0, abs=1e-15)
        if a > b and A > 0:
            assert alpha > 0.5  # the more informative model keeps more of itself


def test_papers_defaults_saturate_towards_the_bounds():
    # With A = 0.4 and c = 500 a difference of 0.1 nats already gives alpha close to 0.7.
    assert adaptive_alpha(2.1, 2.0) == pytest.approx(0.7 - 0.4 / math.pi / 50, abs=1e-4)


def test_parameter_checks():
    with pytest.raises(ValueError, match="A must lie"):
        check_adaptive_parameters(1.5, 500)
    with pytest.raises(ValueError, match="c must be"):
        check_adaptive_parameters(0.4, -1)
    with pytest.raises(ValueError, match="fixed_alpha"):
        fixed_alpha(1.2)
