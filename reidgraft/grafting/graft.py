"""Blend one network's weights into another's (paper Eq. 2), and the other scion sources.

What is grafted (docs/method.md section 3):
- Every floating-point entry of the state dict is blended; integer buffers
  (`num_batches_tracked`) keep the receiving model's own value.
- Scored tensors are floating tensors with 3 or more dimensions: convolution weights of any
  kind, found by shape, never by the substring "conv" in a key.
- Every other floating entry takes the alpha of the nearest scored tensor before it in state
  dict order (a BN takes its conv's alpha, the classifier the last conv's); entries before the
  first scored tensor use 0.5 (with the `fixed` criterion, every entry uses the fixed alpha).
- Optionally the classifier head is left out (`graft_head=False`): the module of the last 2-D
  weight after the last convolution keeps the receiving model's values, and its shape may
  differ between the models.

The blend is written `W_own * alpha + W_other * (1 - alpha)` with the two coefficients computed
as `0.5 + d` and `0.5 - d`, so that for two models (where `d` changes sign) both results are
bit-for-bit the same, as the paper says they must be.

Scions besides a neighbour's whole layers (paper section 3.1, supplement section 2):
`graft_noise`, `graft_internal` and `graft_filters`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from .criteria import CRITERIA, filter_entropies, filter_l1_norms
from .options import GraftOptions
from .weighting import alpha_share

StateDict = Mapping[str, Tensor]

# Alpha for floating entries that come before the first scored tensor (docs/method.md section 3).
LEADING_ALPHA = 0.5


# --------------------------------------------------------------------------- what is grafted


def is_scored(tensor: Tensor) -> bool:
    """Convolution weights: floating tensors with 3 or more dimensions."""
    return tensor.is_floating_point() and tensor.ndim >= 3


def scored_keys(state: StateDict) -> list[str]:
    """Keys of the tensors the criterion scores, in state dict order."""
    return [key for key, tensor in state.items() if is_scored(tensor)]


def head_keys(state: StateDict) -> set[str]:
    """Keys of the classifier head: the module of the last 2-D weight after the last convolution."""
    keys = list(state)
    scored = [i for i, key in enumerate(keys) if is_scored(state[key])]
    after = keys[scored[-1] + 1 :] if scored else keys
    matrices = [k for k in after if state[k].is_floating_point() and state[k].ndim == 2]
    if not matrices:
        return set()
    module = matrices[-1].rpartition(".")[0]
    prefix = f"{module}." if module else ""
    return {k for k in after if k.startswith(prefix) and (module or k == matrices[-1])}


def inherit_along_state(state: StateDict, scored: Mapping[str, float], leading: float) -> dict[str, float]:
    """Give every floating entry the value of the nearest scored key at or before it.

    Entries before the first scored key get `leading`; integer entries get nothing.
    """
    values: dict[str, float] = {}
    current = leading
    for key, tensor in state.items():
        if tensor.is_floating_point():
            current = scored.get(key, current)
            values[key] = current
    return values


def entry_alphas(state: StateDict, scored_alpha: Mapping[str, float]) -> dict[str, float]:
    """Alpha of every floating entry: a scored tensor's own, else the nearest scored one before."""
    return inherit_along_state(state, scored_alpha, LEADING_ALPHA)


def check_compatible(
    own: StateDict, other: StateDict, *, skip_shapes: set[str] = frozenset(), what: str = ""
) -> None:
    """Raise ValueError naming the first key whose name, shape or dtype differs between states."""
    where = f" ({what})" if what else ""
    own_keys, other_keys = list(own), list(other)
    for position, (a, b) in enumerate(zip(own_keys, other_keys)):
        if a != b:
            raise ValueError(f"cannot graft{where}: key {a!r} at position {position} meets {b!r}")
    if len(own_keys) != len(other_keys):
        longer, shorter = (
            (own_keys, other_keys) if len(own_keys) > len(other_keys) else (other_keys, own_keys)
        )
        side = "own" if longer is own_keys else "other"
        raise ValueError(f"cannot graft{where}: key {longer[len(shorter)]!r} is only in the {side} state")
    for key in own_keys:
        a, b = own[key], other[key]
        if a.dtype != b.dtype:
            raise ValueError(f"cannot graft{where}: key {key!r} has dtype {a.dtype} vs {b.dtype}")
        if key not in skip_shapes and a.shape != b.shape:
            raise ValueError(
                f"cannot graft{where}: key {key!r} has shape {tuple(a.shape)} vs {tuple(b.shape)}"
            )


# --------------------------------------------------------------------------- plans


@dataclass
class GraftPlan:
    """What one blend will do: per blended entry, the coefficients of own and of other.

    A coefficient is a float (layer level) or a tensor broadcastable over the entry (filter
    level). Entries absent from `weights` keep the receiving model's value.
    """

    weights: dict[str, tuple[float | Tensor, float | Tensor]]
    alphas: dict[str, float]


def score_state(state: StateDict, keys: list[str], options: GraftOptions) -> dict[str, float]:
    """The criterion's score of each scored tensor (empty for the `fixed` criterion)."""
    if options.criterion == "fixed":
        return {}
    scorer = CRITERIA[options.criterion]
    scores = {}
    for key in keys:
        try:
            scores[key] = scorer(state[key], bins=options.bins, top_bin=options.top_bin)
        except ValueError as error:
            raise ValueError(f"cannot score {key!r}: {error}") from None
    return scores


def plan_layer_graft(
    own: StateDict,
    own_scores: Mapping[str, float],
    other_scores: Mapping[str, float],
    keys: list[str],
    excluded: set[str],
    options: GraftOptions,
) -> GraftPlan:
    """Layer-level plan: one alpha per scored tensor, inherited by the entries after it."""
    shares = {k: alpha_share(options, own_scores.get(k), other_scores.get(k)) for k in keys}
    # d = alpha - 0.5. Entries before the first scored tensor get alpha 0.5 (d = 0); with the
    # `fixed` criterion every entry gets the fixed alpha.
    leading = alpha_share(options, None, None) if options.criterion == "fixed" else LEADING_ALPHA - 0.5
    per_entry = inherit_along_state(own, shares, leading)
    weights = {k: (0.5 + d, 0.5 - d) for k, d in per_entry.items() if k not in excluded}
    return GraftPlan(weights=weights, alphas={k: 0.5 + d for k, d in shares.items()})


def blend(own: Tensor, other: Tensor, w_own: float | Tensor, w_other: float | Tensor) -> Tensor:
    """`own * w_own + other * w_other` as a new tensor (two products, one sum: order-free)."""
    other = other.to(own.device, non_blocking=True)
    return own * w_own + other * w_other


def blend_(own: Tensor, other: Tensor, w_own: float | Tensor, w_other: float | Tensor) -> None:
    """In-place `own <- own * w_own + other * w_other`, the same arithmetic as `blend`."""
    other = other.to(own.device, non_blocking=True)
    own.mul_(w_own).add_(other * w_other)


def apply_plan(own: StateDict, other: StateDict, plan: GraftPlan) -> dict[str, Tensor]:
    """A new state: planned entries blended, every other entry a copy of `own`'s."""
    new_state = {}
    for key, tensor in own.items():
        if key in plan.weights:
            new_state[key] = blend(tensor, other[key], *plan.weights[key])
        else:
            new_state[key] = tensor.clone()
    return new_state


def prepare(own: StateDict, other: StateDict, options: GraftOptions, what: str = ""):
    """Check two states against each other; return the scored keys and the excluded head keys."""
    excluded = set() if options.graft_head else head_keys(own)
    if not options.graft_head and not excluded:
        raise ValueError(
            "graft_head=False, but no classifier head (a 2-D weight after the last convolution) "
            "was found; graft the whole state instead"
        )
    check_compatible(own, other, skip_shapes=excluded, what=what)
    return scored_keys(own), excluded


def graft_state(
    own: StateDict,
    other: StateDict,
    *,
    criterion: str = GraftOptions.criterion,
    A: float = GraftOptions.A,
    c: float = GraftOptions.c,
    bins: int = GraftOptions.bins,
    fixed_alpha: float = GraftOptions.fixed_alpha,
    graft_head: bool = GraftOptions.graft_head,
    top_bin: str = GraftOptions.top_bin,
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Graft `other` into `own` at layer level; return the new state and each scored key's alpha.

    Pure: neither input changes and the result shares no memory with them.
    """
    options = GraftOptions(criterion, A, c, bins, fixed_alpha, graft_head, top_bin)
    keys, excluded = prepare(own, other, options)
    plan = plan_layer_graft(
        own, score_state(own, keys, options), score_state(other, keys, options), keys, excluded, options
    )
    return apply_plan(own, other, plan), plan.alphas


# --------------------------------------------------------------------------- filter level

FILTER_CRITERIA = ("entropy", "fixed")


def plan_filter_graft(
    own: StateDict, other: StateDict, keys: list[str], options: GraftOptions, fraction: float
) -> GraftPlan:
    """Filter-level plan (supplement section 2): only the own model's low-entropy filters change.

    In each scored tensor, the `fraction` of filters with the lowest entropy (Eq. 4) in the
    receiving model are rootstocks; each takes its neighbour's corresponding filter by Eq. 2,
    with alpha from the two filters' entropies (the `fixed` criterion uses `fixed_alpha`).
    All other filters and all unscored entries keep the receiving model's values.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"rootstock fraction must lie in [0, 1], got {fraction}")
    if options.criterion not in FILTER_CRITERIA:
        raise ValueError(
            f"filter-level grafting supports criteria {', '.join(FILTER_CRITERIA)}, not {options.criterion!r}"
        )
    weights, alphas = {}, {}
    for key in keys:
        tensor = own[key]
        count = math.floor(fraction * tensor.shape[0])
        if count == 0:
            continue
        h_own = filter_entropies(tensor, options.bins, options.top_bin)
        roots = torch.argsort(h_own, stable=True)[:count]
        if options.criterion == "fixed":
            share = torch.full((count,), options.fixed_alpha - 0.5, dtype=torch.float64)
        else:
            h_other = filter_entropies(other[key], options.bins, options.top_bin).to(h_own.device)
            diff = options.c * (h_own[roots] - h_other[roots])
            share = (options.A / math.pi) * torch.atan(diff.cpu())
        w_own = torch.ones(tensor.shape[0], dtype=torch.float64)
        w_other = torch.zeros(tensor.shape[0], dtype=torch.float64)
        w_own[roots.cpu()] = 0.5 + share
        w_other[roots.cpu()] = 0.5 - share
        view = (-1,) + (1,) * (tensor.ndim - 1)
        weights[key] = (
            w_own.to(tensor.device, tensor.dtype).view(view),
            w_other.to(tensor.device, tensor.dtype).view(view),
        )
        alphas[key] = float((0.5 + share).mean())
    return GraftPlan(weights=weights, alphas=alphas)


def graft_filters(
    own: StateDict,
    other: StateDict,
    *,
    fraction: float = 0.2,
    criterion: str = GraftOptions.criterion,
    A: float = GraftOptions.A,
    c: float = GraftOptions.c,
    bins: int = GraftOptions.bins,
    fixed_alpha: float = GraftOptions.fixed_alpha,
    top_bin: str = GraftOptions.top_bin,
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Filter-level external grafting; returns the new state and the mean rootstock alpha per layer.

    The papers found layer level better (supplement Table 2); this is kept for that ablation.
    Criteria: `entropy` (per-filter entropies) or `fixed`.
    """
    options = GraftOptions(criterion, A, c, bins, fixed_alpha, True, top_bin)
    keys, _ = prepare(own, other, options)
    plan = plan_filter_graft(own, other, keys, options, fraction)
    return apply_plan(own, other, plan), plan.alphas


# --------------------------------------------------------------------------- internal scions


def _copy_state(state: StateDict) -> dict[str, Tensor]:
    return {key: tensor.clone() for key, tensor in state.items()}


def graft_noise(
    state: StateDict,
    *,
    epoch: int,
    threshold: float = 0.1,
    a: float = 0.975,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], dict[str, int]]:
    """Noise as scions (paper Eq. 1): filters with L1 norm below `threshold` get N(0, a^epoch) added.

    Returns the new state and, per scored key, how many filters were grafted. Pass a seeded
    `generator` (on the tensors' device) for reproducible noise.
    """
    if not 0.0 < a < 1.0:
        raise ValueError(f"noise decay a must lie in (0, 1), got {a}")
    if epoch < 0:
        raise ValueError(f"epoch must be non-negative, got {epoch}")
    sigma = a**epoch
    new_state, counts = _copy_state(state), {}
    for key in scored_keys(state):
        tensor = new_state[key]
        invalid = (filter_l1_norms(tensor) < threshold).nonzero().flatten()
        counts[key] = int(invalid.numel())
        if counts[key]:
            noise = torch.randn((counts[key], *tensor.shape[1:]), generator=generator, device=tensor.device)
            tensor[invalid] += (sigma * noise).to(tensor.dtype)
    return new_state, counts


def graft_internal(state: StateDict, *, threshold: float = 0.1) -> tuple[dict[str, Tensor], dict[str, int]]:
    """Internal filters as scions (paper section 3.1.2): within each layer, the j-th smallest-L1
    filter below `threshold` gets the j-th largest filter added to it.

    Donors are taken from the pre-graft layer and are never invalid themselves: at most
    `min(#invalid, #valid)` filters are grafted per layer. Returns the new state and the count
    of grafted filters per scored key.
    """
    new_state, counts = _copy_state(state), {}
    for key in scored_keys(state):
        tensor = new_state[key]
        norms = filter_l1_norms(tensor)
        order = torch.argsort(norms, stable=True)
        invalid = int((norms < threshold).sum())
        pairs = min(invalid, tensor.shape[0] - invalid)
        counts[key] = pairs
        if pairs:
            receivers = order[:pairs]
            donors = order.flip(0)[:pairs]
            tensor[receivers] += state[key][donors].to(tensor.device)
    return new_state, counts
