"""The K-model ring over torch.distributed: one model per process (NCCL on GPUs, gloo on CPU).

At each epoch end rank k sends its PRE-graft state to rank k+1 and receives rank k-1's, then
blends with the same plan and arithmetic as the in-process `GraftRing` (model k receives from
model k-1), so the K processes together apply the ring's parallel semantics. Each dtype's floating
entries travel as one flat buffer (one message per dtype, not one per tensor). A peer that
died or hangs ends the exchange with `RingExchangeError` after a bounded timeout instead of
waiting forever.

The trainer calls `distributed_graft` when it runs as one rank (`tools/train.py --distributed`
under torchrun); `tools/bench_ring.py` times it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..grafting.graft import GraftOptions, blend_, plan_layer_graft, prepare, score_state, scored_keys

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
    try:
        for work in dist.batch_isend_irecv(operations):
            if not work.wait(timeout=timedelta(seconds=timeout_s)):
                raise RuntimeError("timed out")
    except RuntimeError as error:
        raise RingExchangeError(
            f"rank {rank}: the ring exchange with ranks {preceding} and {following} did not complete "
            f"within {timeout_s:g} s ({str(error).splitlines()[0]}); a process died or hangs. "
            "Each rank's last complete checkpoint stays loadable"
        ) from None
    stats = ExchangeStats(
        bytes_sent=sum(buffer.numel() * buffer.element_size() for buffer in outgoing.values()),
        messages=len(outgoing),
        seconds=time.perf_counter() - started,
    )
    return unflatten_like(incoming, state, keys), stats


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
        SCORES_KEY: torch.tensor([own_scores.get(key, 0.0) for key in keys], dtype=torch.float64),
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
