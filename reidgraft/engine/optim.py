"""Optimizers and learning-rate schedules: the one file to open for a learning-rate change.

Every model of the ring gets its own optimizer and scheduler (its own initial learning rate, see
`ring_learning_rates`); schedulers step once per epoch.
"""

from __future__ import annotations

import math
import warnings

import torch

from ..config import TrainConfig


def build_optimizer(config: TrainConfig, params, lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=False
        )
    amsgrad = config.optimizer == "amsgrad"
    return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay, amsgrad=amsgrad)


def build_scheduler(config: TrainConfig, optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch. `cosine` spans the epochs the run was started with. With
    `warmup_epochs` W, the schedule's rate is scaled by a linear warm-up (`warmed_factor`)."""
    if config.warmup_epochs:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: warmed_factor(config, epoch))
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "constant":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=1.0)
    if config.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=config.milestones, gamma=config.gamma
        )
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)


def schedule_factor(config: TrainConfig, epoch: int) -> float:
    """The schedule's learning rate at `epoch` (0-based) as a fraction of the initial one, in
    closed form: cosine over `config.epochs`, step, multistep, or constant."""
    if config.scheduler == "cosine":
        return (1 + math.cos(math.pi * epoch / config.epochs)) / 2
    if config.scheduler == "constant":
        return 1.0
    if config.scheduler == "multistep":
        return config.gamma ** sum(epoch >= milestone for milestone in config.milestones)
    return config.gamma ** (epoch // config.step_size)


def warmed_factor(config: TrainConfig, epoch: int) -> float:
    """`schedule_factor` times the linear warm-up's factor at `epoch` (0-based): the first epoch
    trains at f = `warmup_factor`, epoch W (1-based) at the full rate, linearly in between, as the
    strong baseline's paper writes it (lr(t) = 3.5e-4 t / 10 for t <= 10 is W = 10, f = 0.1).
    Its milestones count as in the paper too: the rate drops after epoch 40 (1-based), not 39 as
    its code does. W = 1 trains the first epoch alone at f."""
    warm, start = config.warmup_epochs, config.warmup_factor
    ramp = start + (1 - start) * epoch / max(warm - 1, 1) if epoch < warm else 1.0
    return ramp * schedule_factor(config, epoch)


def replay_schedule(config: TrainConfig, optimizer, epochs_done: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A schedule planned for `config.epochs`, stepped `epochs_done` times from the initial learning
    rate: where a run that had planned this total from the start would be (bit for bit; the
    schedulers compute each step from the previous one)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    scheduler = build_scheduler(config, optimizer)
    with warnings.catch_warnings():  # torch warns that no optimizer.step() came between these
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epochs_done):
            scheduler.step()
    return scheduler
