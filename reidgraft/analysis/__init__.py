"""Analysis of trained filters: invalid-filter ratios, entropy, IoU of invalid filters and the
valid/invalid L1 split (`filters.py`)."""

from .filters import (
    DEFAULT_THRESHOLDS,
    INVALID_FRACTION,
    filter_norms,
    invalid_iou,
    invalid_mask,
    invalid_ratios,
    layer_entropies,
    network_entropy,
    valid_invalid_l1,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "INVALID_FRACTION",
    "filter_norms",
    "invalid_iou",
    "invalid_mask",
    "invalid_ratios",
    "layer_entropies",
    "network_entropy",
    "valid_invalid_l1",
]
