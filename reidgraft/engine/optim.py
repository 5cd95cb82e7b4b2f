"""Optimizers and learning-rate schedules: the one file to open for a learning-rate change.

Every model of the ring gets its own optimizer and scheduler (its own initial learning rate, see
`ring_learning_rates`); schedulers step once per epoch. Each schedule exists once, in closed
form (`SCHEDULES`: the rate at an epoch as a fraction of the initial one); the torch scheduler
is a LambdaLR of it, times the linear warm-up when there is one, so a resumed run replays
exactly the rates a straight run takes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from ..config import TrainConfig
from ..config.schema import SCHEDULERS

# schedule name -> its factor at `epoch` (0-based) for the config's settings
SCHEDULES: dict[str, Callable[[TrainConfig, int], float]] = {
    "step": lambda config, epoch: config.gamma ** (epoch // config.step_size),
    "multistep": lambda config, epoch: (
        config.gamma ** sum(epoch >= milestone for milestone in config.milestones)
    ),
    "cosine": lambda config, epoch: (
        (1 + math.cos(math.pi * epoch / config.epochs)) / 2
    ),  # over the run's epochs
    "constant": lambda config, epoch: 1.0,
}
assert tuple(SCHEDULES) == SCHEDULERS  # the config offers exactly these


def build_optimizer(config: TrainConfig, params, lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=False
        )
    if config.optimizer not in ("adam", "amsgrad"):
        raise ValueError(f"unknown optimizer {config.optimizer!r}; choose one of: amsgrad, adam, sgd")
    amsgrad = config.optimizer == "amsgrad"
    return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay, amsgrad=amsgrad)


def schedule_factor(config: TrainConfig, epoch: int) -> float:
    """The schedule's learning rate at `epoch` (0-based) as a fraction of the initial one:
    cosine over `config.epochs`, step, multistep, or constant. An unknown name is an error,
    never a silent fall-back."""
    if config.scheduler not in SCHEDULES:
        raise ValueError(f"unknown scheduler {config.scheduler!r}; choose one of: {', '.join(SCHEDULES)}")
    return SCHEDULES[config.scheduler](config, epoch)


def warmed_factor(config: TrainConfig, epoch: int) -> float:
    """`schedule_factor` times the linear warm-up's factor at `epoch` (0-based): the first epoch
    trains at f = `warmup_factor`, epoch W (1-based) at the full rate, linearly in between, as the
    strong baseline's paper writes it (lr(t) = 3.5e-4 t / 10 for t <= 10 is W = 10, f = 0.1).
    Its milestones count as in the paper too: the rate drops after epoch 40 (1-based), not 39 as
    its code does. W = 1 trains the first epoch alone at f; W = 0 is no warm-up."""
    warm, start = config.warmup_epochs, config.warmup_factor
    ramp = start + (1 - start) * epoch / max(warm - 1, 1) if epoch < warm else 1.0
    return ramp * schedule_factor(config, epoch)


def build_scheduler(config: TrainConfig, optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: the initial rate times `warmed_factor`."""
    schedule_factor(config, 0)  # an unknown schedule fails here, before any training
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: warmed_factor(config, epoch))


def replay_schedule(config: TrainConfig, optimizer, epochs_done: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A schedule planned for `config.epochs`, stepped `epochs_done` times from the initial learning
    rate: where a run that had planned this total from the start would be."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    scheduler = build_scheduler(config, optimizer)
    with warnings.catch_warnings():  # torch warns that no optimizer.step() came between these
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epochs_done):
            scheduler.step()
    return scheduler


def stretched_schedule(config: TrainConfig, factor: int) -> dict[str, object]:
    """The settings that train `config`'s schedule over `factor` times its epochs: every length
    counted in epochs (the run, the step, the milestones, the warm-up, the evaluation interval)
    multiplied, so that epoch factor x e of the long run has the rate epoch e of the short one
    had (cosine: the same curve, sampled `factor` times as finely). A warm-up ramps linearly
    over factor x W epochs instead, so it matches at its two ends only."""
    return {
        "epochs": config.epochs * factor,
        "step_size": config.step_size * factor,
        "milestones": [milestone * factor for milestone in config.milestones],
        "warmup_epochs": config.warmup_epochs * factor,
        "eval_every": config.eval_every * factor,
    }
