"""Filter analysis: does grafting re-activate invalid filters? The measures of the papers'
Fig. 6-7 (CVPR) / 7-8 (journal), supplement Table 1 and journal Tables 8 and 10.

A filter is one output channel of a convolution weight (any 4-D floating tensor of a state dict,
the tensors the grafting criterion scores); its L1 norm is the sum of its absolute weights (Eq. 3,
not a mean: the journal's Table 8 averages about 7 for ResNet-56's valid filters). All functions
take state dicts, so they work on any reidgraft checkpoint's models, re-ID or classification.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..grafting import GraftOptions, filter_l1_norms, layer_entropy, scored_keys

# The papers' Fig. 6 x-axis: thresholds from 1e-3 to 1, log-spaced (4 per decade).
DEFAULT_THRESHOLDS = tuple(float(t) for t in np.logspace(-3, 0, 13))
INVALID_FRACTION = 0.2  # supplement Table 1: the 20% smallest-L1 filters of a layer count as invalid


def filter_norms(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Each convolution's per-filter L1 norms, in state dict order."""
    return {key: filter_l1_norms(state[key]).double().cpu().numpy() for key in scored_keys(state)}


def invalid_ratios(
    norms: Mapping[str, np.ndarray], thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> list[float]:
    """The fraction of all the network's filters whose L1 norm is below each threshold."""
    every = np.concatenate(list(norms.values())) if norms else np.empty(0)
    if every.size == 0:
        raise ValueError("the model has no convolution filters to analyse")
    return [float(np.mean(every < threshold)) for threshold in thresholds]


def layer_entropies(state: Mapping[str, torch.Tensor], bins: int = GraftOptions.bins) -> dict[str, float]:
    """Each convolution's entropy (docs/method.md section 1: the histogram of all its weights)."""
    return {key: layer_entropy(state[key], bins) for key in scored_keys(state)}


def network_entropy(state: Mapping[str, torch.Tensor], bins: int = GraftOptions.bins) -> float:
    """The sum of the layer entropies: the papers' 'information of the network' (Fig. 7)."""
    return float(sum(layer_entropies(state, bins).values()))


def invalid_mask(norms: np.ndarray, fraction: float = INVALID_FRACTION) -> np.ndarray:
    """The layer's `fraction` smallest-L1 filters (at least one; ties broken by filter index)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    count = max(1, int(round(fraction * len(norms))))
    mask = np.zeros(len(norms), dtype=bool)
    mask[np.argsort(norms, kind="stable")[:count]] = True
    return mask


def invalid_iou(
    norms_a: Mapping[str, np.ndarray], norms_b: Mapping[str, np.ndarray], fraction: float = INVALID_FRACTION
) -> dict[str, float]:
    """Per layer, the IoU of the invalid filters' positions in two models of one architecture
    (1 where they are the same filters, 0 where none is shared)."""
    if list(norms_a) != list(norms_b) or any(len(norms_a[k]) != len(norms_b[k]) for k in norms_a):
        raise ValueError("the two models differ in their convolutions; IoU needs one architecture")
    result = {}
    for key in norms_a:
        a, b = invalid_mask(norms_a[key], fraction), invalid_mask(norms_b[key], fraction)
        result[key] = float(np.sum(a & b) / np.sum(a | b))
    return result


def valid_invalid_l1(
    baseline_norms: Mapping[str, np.ndarray], norms: Mapping[str, np.ndarray], threshold: float
) -> dict[str, float | int | None]:
    """Journal Tables 8 and 10: the filters under `threshold` in the BASELINE model are the
    invalid ones (the others valid); the average L1 of those same positions in `norms`."""
    if list(baseline_norms) != list(norms) or any(len(baseline_norms[k]) != len(norms[k]) for k in norms):
        raise ValueError("the model and its baseline differ in their convolutions")
    split = np.concatenate([baseline_norms[key] for key in norms]) < threshold
    values = np.concatenate([norms[key] for key in norms])
    return {
        "threshold": float(threshold),
        "valid_count": int(np.sum(~split)),
        "invalid_count": int(np.sum(split)),
        # None when the baseline has no filter on that side of the threshold.
        "valid_mean_l1": float(values[~split].mean()) if (~split).any() else None,
        "invalid_mean_l1": float(values[split].mean()) if split.any() else None,
    }
