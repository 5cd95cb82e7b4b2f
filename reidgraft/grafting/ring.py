"""The K-model grafting ring of Algorithm 1: in one process (`GraftRing`), and over
torch.distributed with one model per process (`distributed_graft`, at the end of this file).

At the end of every epoch model k receives from model k-1 (model 0 from model K-1):
`W_k <- alpha W_k + (1 - alpha) W_{k-1}`, every model blending with its neighbour's PRE-graft
weights. K = 1 is the baseline and does nothing.

Parallel semantics without K copies: all scores, and so all alphas, are taken first from the
pre-graft weights. Models are then blended in place from K-1 down to 1, each reading a
neighbour that has not been written yet, and model 0 last from one snapshot of model K-1's
pre-graft weights. That is one state copy instead of K.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .graft import (
    GraftOptions,
    GraftPlan,
    blend_,
    plan_filter_graft,
    plan_layer_graft,
    prepare,
    score_state,
    scored_keys,
)
from .options import LEVELS


def ring_learning_rates(base_lr: float, count: int) -> list[float]:
    """Initial learning rates that make the K models differ (docs/method.md section 5).

    Cosine-spaced: model k starts at `base_lr * (1 + cos(pi * (K - 1 - k) / K)) / 2`, so the
    last model keeps `base_lr` (K = 4: 0.146, 0.5, 0.854, 1.0 times it). One model keeps it too.
    """
    if count < 1:
        raise ValueError(f"need at least one model, got {count}")
    return [base_lr * (1 + math.cos(math.pi * (count - 1 - k) / count)) / 2 for k in range(count)]


class GraftRing:
    """Graft K models into each other in a ring, in place, on whatever device and dtype they are.

    Options are those of `graft_state` (criterion, A, c, bins, fixed_alpha, graft_head), plus
    `level="filter"` with `fraction` for the filter-level ablation (supplement section 2).
    Models whose states cannot be grafted raise ValueError here, before any weight changes.
    """

    def __init__(
        self, models: Sequence[nn.Module], *, level: str = "layer", fraction: float = 0.2, **options
    ):
        if len(models) == 0:
            raise ValueError("GraftRing needs at least one model")
        if level not in LEVELS:
            raise ValueError(f"unknown grafting level {level!r}; choose one of: {', '.join(LEVELS)}")
        self.models = list(models)
        self.level = level
        self.fraction = fraction
        self.options = GraftOptions(**options)
        self._check(self._states())

    def __len__(self) -> int:
        return len(self.models)

    def _states(self) -> list[dict[str, Tensor]]:
        return [model.state_dict() for model in self.models]

    def _check(self, states: list[dict[str, Tensor]]) -> tuple[list[str], set[str]]:
        """Check every pair of neighbours; return the scored keys and the excluded head keys."""
        keys, excluded = [], set()
        for k in range(len(states) if len(states) > 1 else 0):
            what = f"model {k} <- model {(k - 1) % len(states)}"
            keys, excluded = prepare(states[k], states[k - 1], self.options, what=what)
        return keys, excluded

    @torch.no_grad()
    def graft(self) -> list[dict[str, float]]:
        """Run one ring graft; return, for each model, the alpha of each scored tensor."""
        if len(self.models) == 1:
            return [{}]
        states = self._states()
        plans = self._plan(states, *self._check(states))

        last = len(states) - 1
        snapshot = {key: states[last][key].clone() for key in plans[0].weights}
        for k in range(last, -1, -1):
            source = snapshot if k == 0 else states[k - 1]
            done: set[int] = set()
            for key, (w_own, w_other) in plans[k].weights.items():
                tensor = states[k][key]
                # Tied parameters appear under several keys; blend their storage once.
                if tensor.data_ptr() in done:
                    continue
                done.add(tensor.data_ptr())
                blend_(tensor, source[key], w_own, w_other)
        return [plan.alphas for plan in plans]

    def _plan(self, states: list[dict[str, Tensor]], keys: list[str], excluded: set[str]) -> list[GraftPlan]:
        """Each model's plan against its neighbour, all from pre-graft weights."""
        count = len(states)
        if self.level == "filter":
            return [
                plan_filter_graft(states[k], states[k - 1], keys, self.options, self.fraction)
                for k in range(count)
            ]
        scores = [score_state(state, keys, self.options) for state in states]
        return [
            plan_layer_graft(states[k], scores[k], scores[k - 1], keys, excluded, self.options)
            for k in range(count)
        ]


# --------------------------------------------------------------------------- over torch.distributed
# One model per process (NCCL on GPUs, gloo on CPU). At each epoch end rank k sends its PRE-graft
# state, with its layer scores, to rank k+1 and receives rank k-1's, then blends with the same
# plan and arithmetic as `GraftRing` for model k, so the K processes together apply the ring's
# parallel semantics. Each dtype's floating entries travel as one flat buffer (one message per
# dtype, not one per tensor). A neighbour that died or hangs ends the exchange with
# `RingExchangeError` after a bounded timeout instead of a wait forever. The trainer calls
# `distributed_graft` when it runs as one rank (`tools/train.py --distributed` under torchrun).

DEFAULT_TIMEOUT_S = 180.0
SCORES_KEY = "__graft_scores__"  # the sender's layer scores travel with its state


class RingExchangeError(RuntimeError):
    """The ring exchange did not complete: a neighbour stopped or hangs."""


@dataclass(frozen=True)
class ExchangeStats:
    bytes_sent: int
    messages: int
    seconds: float


def floating_keys(state: Mapping[str, Tensor]) -> list[str]:
    """The entries a graft blends (integer buffers keep the receiver's own value)."""
    return [key for key, tensor in state.items() if tensor.is_floating_point()]


def flatten_by_dtype(state: Mapping[str, Tensor], keys: list[str]) -> dict[torch.dtype, Tensor]:
    """One contiguous buffer per dtype, entries in `keys` order."""
    groups: dict[torch.dtype, list[Tensor]] = {}
    for key in keys:
        groups.setdefault(state[key].dtype, []).append(state[key].detach().reshape(-1))
    return {dtype: torch.cat(parts) for dtype, parts in groups.items()}


def unflatten_like(buffers: Mapping[torch.dtype, Tensor], template: Mapping[str, Tensor], keys: list[str]):
    """Split the buffers back into tensors shaped as `template`'s entries (views, no copies)."""
    offsets = dict.fromkeys(buffers, 0)
    result = {}
    for key in keys:
        like = template[key]
        start = offsets[like.dtype]
        result[key] = buffers[like.dtype][start : start + like.numel()].view(like.shape)
        offsets[like.dtype] = start + like.numel()
    return result


def ring_exchange(
    state: Mapping[str, Tensor], *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[dict[str, Tensor], ExchangeStats]:
    """Send `state` to rank k+1, receive rank k-1's (same architecture); returns its floating
    entries and what the exchange cost. Raises RingExchangeError when it does not complete."""
    rank, world = dist.get_rank(), dist.get_world_size()
    keys = floating_keys(state)
    started = time.perf_counter()
    outgoing = flatten_by_dtype(state, keys)
    incoming = {dtype: torch.empty_like(buffer) for dtype, buffer in outgoing.items()}
    following, preceding = (rank + 1) % world, (rank - 1) % world
    operations = []
    for dtype in outgoing:  # the same dtype order on every rank: the state dicts match
        operations.append(dist.P2POp(dist.isend, outgoing[dtype], following))
        operations.append(dist.P2POp(dist.irecv, incoming[dtype], preceding))
    peers = f"rank {preceding}" if preceding == following else f"ranks {preceding} and {following}"
    try:
        for work in dist.batch_isend_irecv(operations):
            if not work.wait(timeout=timedelta(seconds=timeout_s)):
                raise TimeoutError("timed out")
    except (TimeoutError, RuntimeError) as error:
        if isinstance(error, TimeoutError | dist.DistNetworkError) or peer_lost(error):
            raise RingExchangeError(
                f"rank {rank}: the ring exchange with {peers} did not complete "
                f"within {timeout_s:g} s ({str(error).splitlines()[0]}); a process died or hangs. "
                "Each rank's last complete checkpoint stays loadable"
            ) from None
        # anything else (a tensor on the wrong device, a dtype the backend lacks): the real cause
        raise RingExchangeError(
            f"rank {rank}: the ring exchange with {peers} failed: {str(error).splitlines()[0]} "
            f"(buffers {', '.join(f'{d} on {b.device}' for d, b in outgoing.items())}, "
            f"backend {dist.get_backend()})"
        ) from None
    stats = ExchangeStats(
        bytes_sent=sum(buffer.numel() * buffer.element_size() for buffer in outgoing.values()),
        messages=len(outgoing),
        seconds=time.perf_counter() - started,
    )
    return unflatten_like(incoming, state, keys), stats


# What backends say when a peer is gone or silent (gloo raises plain RuntimeErrors).
PEER_LOST = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe", "refused")


def peer_lost(error: BaseException) -> bool:
    """Whether a collective's error says a peer died, hung or went away (not a bug of ours)."""
    message = str(error).lower()
    return any(words in message for words in PEER_LOST)


def _device_of(state: Mapping[str, Tensor]) -> torch.device:
    return next(iter(state.values())).device


@torch.no_grad()
def distributed_graft(
    model: nn.Module, *, timeout_s: float = DEFAULT_TIMEOUT_S, **options
) -> tuple[dict[str, float], ExchangeStats]:
    """This rank's part of one ring graft, in place: the same plan and arithmetic as `GraftRing`
    for model k. Each rank scores its own pre-graft state once and sends the scores with it, so
    no rank scores its neighbour's. Returns the alphas and what the exchange cost."""
    graft_options = GraftOptions(**options)
    own = model.state_dict()
    keys = scored_keys(own)
    own_scores = score_state(own, keys, graft_options)
    message = {
        **own,
        # on the model's device: NCCL sends CUDA tensors only
        SCORES_KEY: torch.tensor(
            [own_scores.get(key, 0.0) for key in keys], dtype=torch.float64, device=_device_of(own)
        ),
    }
    received, stats = ring_exchange(message, timeout_s=timeout_s)
    other_scores = dict(zip(keys, received.pop(SCORES_KEY).tolist())) if own_scores else {}
    other = {key: received.get(key, tensor) for key, tensor in own.items()}
    _, excluded = prepare(own, other, graft_options, what=f"rank {dist.get_rank()}")
    plan = plan_layer_graft(own, own_scores, other_scores, keys, excluded, graft_options)
    done: set[int] = set()
    for key, (w_own, w_other) in plan.weights.items():
        tensor = own[key]
        if tensor.data_ptr() in done:  # tied parameters: blend their storage once
            continue
        done.add(tensor.data_ptr())
        blend_(tensor, other[key], w_own, w_other)
    return plan.alphas, stats
