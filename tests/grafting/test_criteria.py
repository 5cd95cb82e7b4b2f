import math

import numpy as np
import pytest
import torch

from reidgraft.grafting import (
    filter_entropies,
    filter_entropy_sum,
    filter_l1_norms,
    l1_norm,
    layer_entropy,
)


def numpy_entropy(values: np.ndarray, bins: int) -> float:
    """Independent reference: numpy's histogram over the array's own range, natural log."""
    values = values.astype(np.float64).ravel()
    if values.min() == values.max():
        return 0.0
    counts, _ = np.histogram(values, bins=bins, range=(values.min(), values.max()))
    p = counts[counts > 0] / values.size
    return float(-(p * np.log(p)).sum())


def test_uniform_histogram_has_entropy_ln_bins():
    # 0..9 repeated: with 10 bins over [0, 9] each value falls in its own bin, 9 in the last.
    t = torch.arange(10.0).repeat(6).reshape(4, 3, 5)
    assert layer_entropy(t, bins=10) == pytest.approx(math.log(10), abs=1e-12)
    assert layer_entropy(torch.arange(5.0), bins=5) == pytest.approx(math.log(5), abs=1e-12)


@pytest.mark.parametrize("value", [0.0, 3.5, -1e-3])
def test_constant_tensor_has_zero_entropy(value):
    t = torch.full((8, 4, 3, 3), value)
    assert layer_entropy(t) == 0.0
    assert filter_entropy_sum(t) == 0.0


def test_maximum_value_is_counted_in_last_bin():
    # Three values in the first bin and the maximum alone: p = (3/4, 1/4).
    t = torch.tensor([0.0, 0.0, 0.0, 1.0])
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert layer_entropy(t, bins=10) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bins", [2, 10, 31])
def test_layer_entropy_matches_numpy_histogram(seed, bins):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(16, 8, 3, 3, generator=g) ** (seed + 1)
    h = layer_entropy(t, bins=bins)
    assert h == pytest.approx(numpy_entropy(t.numpy(), bins), abs=1e-9)
    assert 0.0 <= h <= math.log(bins) + 1e-12


def test_layer_entropy_scores_half_precision():
    t = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    assert layer_entropy(t.half()) == pytest.approx(layer_entropy(t.half().float()), abs=1e-12)


def test_filter_entropies_equal_per_filter_histograms():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(12, 6, 3, 3, generator=g)
    t[4] = 2.0  # a constant filter
    per_filter = filter_entropies(t)
    expected = [numpy_entropy(t[j].numpy(), 10) for j in range(t.shape[0])]
    assert per_filter.tolist() == pytest.approx(expected, abs=1e-9)
    assert per_filter[4] == 0.0
    assert filter_entropy_sum(t) == pytest.approx(sum(expected), abs=1e-9)
    # Eq. 5 is not Eq. 6: the sum of filter entropies is far above the layer's.
    assert filter_entropy_sum(t) > 5 * layer_entropy(t)


def test_l1_norms():
    t = torch.tensor([[[1.0, -2.0]], [[0.5, -0.25]]])
    assert l1_norm(t) == pytest.approx(3.75)
    assert filter_l1_norms(t).tolist() == pytest.approx([3.0, 0.75])


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([1.0, float("nan")]), "NaN"),
        (torch.tensor([1.0, float("inf")]), "NaN or infinite"),
        (torch.tensor([1, 2, 3]), "floating-point"),
        (torch.empty(0), "empty"),
    ],
)
def test_bad_tensors_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        layer_entropy(bad)


def test_nonpositive_bins_rejected():
    with pytest.raises(ValueError, match="bins"):
        layer_entropy(torch.randn(4), bins=0)


@pytest.mark.parametrize("size", [1000, 3 * (1 << 18) + 17])  # one chunk, and several with a tail
def test_fast_histogram_agrees_with_histc(size):
    from reidgraft.grafting.criteria import histogram_counts

    t = torch.randn(size, generator=torch.Generator().manual_seed(size)) * 0.05
    low, high = t.min().item(), t.max().item()
    counts = histogram_counts(t, low, high, 10)
    reference = torch.histc(t, bins=10, min=low, max=high).long()
    assert counts.sum().item() == size
    assert (counts - reference).abs().sum().item() <= 2  # at most one value on an edge moves
    assert counts[-1] >= 1  # the maximum is counted, in the last bin
    assert layer_entropy(t) == pytest.approx(numpy_entropy(t.numpy(), 10), abs=1e-5)


def test_the_authors_top_bin_counts_the_maximum_in_no_bin():
    """[0, 0, 1, 1, 2, 3] in 2 bins over 0..3: inclusive counts 4 and 2 of 6; the authors'
    entropy() leaves out the values equal to the maximum (3), counting 4 and 1, p still over 6."""
    values = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 3.0])
    entropy = lambda *p: -sum(q * math.log(q) for q in p)  # noqa: E731
    assert layer_entropy(values, bins=2) == pytest.approx(entropy(4 / 6, 2 / 6))
    assert layer_entropy(values, bins=2, top_bin="authors") == pytest.approx(entropy(4 / 6, 1 / 6))
    assert layer_entropy(values, bins=2) == pytest.approx(numpy_entropy(values.numpy(), 2))
    # per filter: each row's own maximum is left out, as the layer-level function does for one row
    rows = torch.randn(5, 3, 3, 3, generator=torch.Generator().manual_seed(4))
    each = filter_entropies(rows, bins=4, top_bin="authors")
    for j in range(5):
        assert each[j].item() == pytest.approx(layer_entropy(rows[j], bins=4, top_bin="authors"), abs=1e-9)
        assert each[j] < filter_entropies(rows, bins=4)[j]  # a lost count lowers the entropy here
    assert filter_entropy_sum(rows, bins=4, top_bin="authors") == pytest.approx(float(each.sum()))


def test_an_unknown_top_bin_is_refused_by_name():
    from reidgraft.grafting.options import GraftOptions

    with pytest.raises(ValueError, match="unknown top_bin 'upper'; choose one of: inclusive, authors"):
        GraftOptions(top_bin="upper")
