"""Optimizers and learning-rate schedules: the one file to open for a learning-rate change.

Every model of the ring gets its own optimizer and scheduler (its own initial learning rate, see
`ring_learning_rates`); schedulers step once per epoch.
"""

from __future__ import annotations

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
    """Stepped once per epoch. `cosine` spans the epochs the run was started with."""
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "constant":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=1.0)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)


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
