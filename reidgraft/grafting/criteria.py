"""How much information a layer holds: the criteria of the grafting papers.

- `layer_entropy`: entropy of the histogram of all values of a layer's weight (Eq. 6). This is
  the criterion reidgraft uses by default.
- `filter_entropy_sum`: the sum of per-filter entropies (Eq. 5), kept for the ablation.
- `l1_norm`: the layer's L1 norm (Eq. 3). Its scale is thousands of times entropy's, so the
  adaptive coefficient's `c` must be far smaller with it (c = 500 saturates alpha at once).

Histograms follow docs/method.md section 1: `bins` equal-width bins over the tensor's own
min..max, the maximum counted in the last bin (as `torch.histc` does), p = count / numel, empty
bins skipped, natural log. A constant tensor has entropy 0. With `top_bin="authors"` the values
equal to the maximum are counted in no bin, as the authors' entropy() does (its bins are
half-open, [edge_i, edge_i+1)), while p still divides by numel: the p's then sum to less than 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .options import CRITERION_NAMES, GraftOptions


def _entropy_of_counts(counts: Tensor, total: int | Tensor) -> Tensor:
    """Entropy (nats) of histograms along the last dimension; empty bins contribute 0."""
    p = counts.to(torch.float64) / total
    return -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(dim=-1)


def _check_scorable(t: Tensor, bins: int) -> Tensor:
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    if t.numel() == 0:
        raise ValueError("cannot score an empty tensor")
    if not t.is_floating_point():
        raise ValueError(f"can only score floating-point tensors, got dtype {t.dtype}")
    # Half precision is scored in float32.
    return t.detach().float() if t.dtype not in (torch.float32, torch.float64) else t.detach()


# Values are binned in chunks of this many elements so the temporaries stay in cache.
_CHUNK = 1 << 18


def histogram_counts(t: Tensor, low: float, high: float, bins: int) -> Tensor:
    """Counts of `t`'s values in `bins` equal-width bins over [low, high], high in the last bin.

    Bin of x: floor((x - low) * bins / (high - low)), as torch.histc computes it; a value within
    rounding of an inner edge may land one bin over (histc itself disagrees with numpy there).
    This is about four times faster than torch.histc on CPU, which dominated a ring graft.
    """
    flat = t.reshape(-1)
    scale = bins / (high - low)
    if not math.isfinite(scale):  # a span so small its reciprocal overflows float32
        flat, scale = flat.double(), bins / (float(high) - float(low))
    counts = torch.zeros(bins, dtype=torch.int64, device=t.device)
    for chunk in flat.split(_CHUNK):
        position = ((chunk - low) * scale).to(torch.int32).clamp_(0, bins - 1)
        counts += torch.bincount(position, minlength=bins)
    return counts


def layer_entropy(t: Tensor, bins: int = GraftOptions.bins, top_bin: str = GraftOptions.top_bin) -> float:
    """Entropy of the histogram of all values of `t` (paper Eq. 6), in nats, in [0, ln bins]."""
    t = _check_scorable(t, bins)
    low, high = (float(v) for v in torch.aminmax(t))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("cannot score a tensor holding NaN or infinite values")
    if low == high:
        return 0.0
    counted = t if top_bin == "inclusive" else t[t < high]  # "authors": the maximum in no bin
    return float(_entropy_of_counts(histogram_counts(counted, low, high, bins), t.numel()))


def filter_entropies(t: Tensor, bins: int = GraftOptions.bins, top_bin: str = GraftOptions.top_bin) -> Tensor:
    """Entropy of each filter `t[j]` (paper Eq. 4), each binned over its own min..max.

    Vectorised: one pass over the layer instead of one histogram per filter, with the bins of
    `histogram_counts`, so each row equals `layer_entropy(t[j])` up to a value within rounding
    of an inner bin edge (a change of 1 / numel in one probability).
    """
    t = _check_scorable(t, bins)
    rows = t.reshape(t.shape[0], -1)
    low, high = torch.aminmax(rows, dim=1)
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ValueError("cannot score a tensor holding NaN or infinite values")
    span = (high - low).unsqueeze(1)
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    position = ((rows - low.unsqueeze(1)) * bins / safe_span).long().clamp_(0, bins - 1)
    counts = torch.zeros(rows.shape[0], bins, dtype=torch.float64, device=rows.device)
    weight = torch.ones_like(position, dtype=torch.float64)
    if top_bin != "inclusive":  # "authors": each filter's maximum in no bin
        weight = (rows < high.unsqueeze(1)).to(torch.float64)
    counts.scatter_add_(1, position, weight)
    # A constant filter lands wholly in bin 0, so its entropy is 0 as the criterion requires.
    return _entropy_of_counts(counts, rows.shape[1])


def filter_entropy_sum(
    t: Tensor, bins: int = GraftOptions.bins, top_bin: str = GraftOptions.top_bin
) -> float:
    """Sum over filters (output channels) of each filter's entropy (paper Eq. 5)."""
    return float(filter_entropies(t, bins, top_bin).sum())


def filter_l1_norms(t: Tensor) -> Tensor:
    """L1 norm of each filter `t[j]` (one value per output channel)."""
    if t.ndim == 0:
        raise ValueError("a filter norm needs at least one dimension")
    return t.detach().reshape(t.shape[0], -1).abs().sum(dim=1, dtype=torch.float64)


def l1_norm(t: Tensor) -> float:
    """L1 norm of the whole layer (paper Eq. 3)."""
    if not t.is_floating_point():
        raise ValueError(f"can only score floating-point tensors, got dtype {t.dtype}")
    return float(t.detach().abs().sum(dtype=torch.float64))


# Criterion name -> layer scorer. `fixed` needs no score and is handled by the weighting.
CRITERIA = {
    "entropy": layer_entropy,
    "entropy_filter_sum": filter_entropy_sum,
    "l1": lambda t, bins=GraftOptions.bins, top_bin=GraftOptions.top_bin: l1_norm(t),
}
assert (*CRITERIA, "fixed") == CRITERION_NAMES  # every criterion the options name is scored here
