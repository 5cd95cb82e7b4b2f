"""Weight averages of a population, and batch-norm statistics estimated anew for averaged (or
EMA) weights: averaged running statistics do not describe the averaged weights' activations."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

BN_IMAGES = 4096  # training images that re-estimate an averaged model's BN statistics (at most)


def floating_keys(state: dict[str, Tensor]) -> list[str]:
    """The entries an average blends: every floating one (BN statistics included); integer
    buffers such as BN's batch counter are kept."""
    return [key for key, tensor in state.items() if tensor.is_floating_point()]


def mean_of(tensors: Sequence[Tensor]) -> Tensor:
    """The mean as `sum(t * (1/K))` on the first tensor's device: for K = 2 the same arithmetic
    as a graft with alpha 0.5 (`own * 0.5 + other * 0.5`), so the two agree bit for bit."""
    share = 1.0 / len(tensors)
    total = tensors[0] * share
    for tensor in tensors[1:]:
        total = total + tensor.to(total.device) * share
    return total


@torch.no_grad()
def average_into_(models: Sequence[nn.Module], rates: Sequence[float] | None = None) -> None:
    """Move every model toward the models' mean, in place: `w_k <- w_k + rate_k (mean - w_k)`
    (rate 1, the default: every model becomes the mean). All means are taken first, from the
    weights before any move."""
    states = [model.state_dict() for model in models]
    rates = [1.0] * len(models) if rates is None else list(rates)
    done: set[int] = set()  # tied parameters appear under several keys: moved once
    for key in floating_keys(states[0]):
        if states[0][key].data_ptr() in done:
            continue
        done.add(states[0][key].data_ptr())
        tensors = [state[key] for state in states]
        mean = mean_of(tensors)
        for tensor, rate in zip(tensors, rates, strict=True):
            if rate == 0:
                continue
            if rate == 1:
                tensor.copy_(mean)
            else:
                tensor.lerp_(mean.to(tensor.device), rate)


def reestimate_batch_norm(model: nn.Module, batches: Iterable[Tensor]) -> nn.Module:
    """Replace `model`'s batch-norm running statistics by their cumulative average over
    `batches` (forwarded in train mode, without gradients), then put it in eval mode. The
    random number generators are left as they were, so estimating statistics changes nothing
    else a run computes."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    device = next(model.parameters()).device
    momenta = [norm.momentum for norm in norms]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over every batch seen
        model.train()
        for images in batches:
            model(images.to(device))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    return model.eval()


def weight_average(models: Sequence[nn.Module], batches: Iterable[Tensor]) -> nn.Module:
    """One new model whose weights are the models' mean ("model soup"), its batch-norm
    statistics re-estimated on `batches`."""
    average = copy.deepcopy(models[0])
    average_into_([average, *models[1:]], rates=[1.0] + [0.0] * (len(models) - 1))
    return reestimate_batch_norm(average, batches)


def model_stock_ratio(finetuned: Sequence[Tensor], start: Tensor) -> float:
    """Model Stock's interpolation ratio for one layer (Jang et al., ECCV 2024): with cos the mean
    cosine between the N fine-tuned models' moves away from their common start,
    t = N cos / (1 + (N - 1) cos). Clipped to [0, 1]: moves at right angles or worse keep the start;
    a layer that did not move (zero moves) takes the models' mean (t = 1)."""
    moves = [(tensor.double() - start.double()).flatten() for tensor in finetuned]
    cosines = []
    for i in range(len(moves)):
        for j in range(i + 1, len(moves)):
            norms = moves[i].norm() * moves[j].norm()
            if norms == 0:
                return 1.0
            cosines.append(float(moves[i] @ moves[j] / norms))
    cos, n = sum(cosines) / len(cosines), len(moves)
    return min(1.0, max(0.0, n * cos / (1 + (n - 1) * cos))) if cos > 0 else 0.0


@torch.no_grad()
def model_stock(
    models: Sequence[nn.Module], start: dict[str, Tensor], batches: Iterable[Tensor]
) -> tuple[nn.Module, dict[str, float]]:
    """One new model, layer by layer `t * mean + (1 - t) * start` (`model_stock_ratio`) over the
    floating entries the models share with `start` (the common pretrained weights); entries with
    no common start (a re-ID head initialised per model) take the plain mean. Batch-norm
    statistics are re-estimated on `batches`. Returns it and each weight's t."""
    merged = copy.deepcopy(models[0])
    target, states = merged.state_dict(), [model.state_dict() for model in models]
    ratios: dict[str, float] = {}
    for key in floating_keys(states[0]):
        tensors = [state[key] for state in states]
        mean = mean_of(tensors)
        origin = start.get(key)
        if origin is not None and origin.shape == mean.shape and "running_" not in key:
            origin = origin.to(mean.device, mean.dtype)
            ratios[key] = model_stock_ratio(tensors, origin)
            mean = origin + ratios[key] * (mean - origin)
        target[key].copy_(mean)
    return reestimate_batch_norm(merged, batches), ratios
