"""Every value of a config checked before any work: the first bad field is a ConfigError whose
one line names it and what it may be. The bounds of numbers come from each field's `minimum`
and `bounds`, a population method's needs from its spec (`population.registry`); the rest are
written here."""

from __future__ import annotations

import dataclasses
import math

from ..grafting.options import GraftOptions
from ..population.registry import POPULATIONS
from .schema import FIELDS, GRAFT_OPTIONS, LOSSES, ConfigError, TrainConfig, parse_bounds, shown


def check_config(config: TrainConfig) -> TrainConfig:
    """Check every value; raise ConfigError naming the first bad field. Returns `config`."""
    for f in dataclasses.fields(config):  # inf and nan pass every comparison below
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")
    for name, f in FIELDS.items():
        minimum = f.metadata.get("minimum")
        if minimum is not None and getattr(config, name) < minimum:
            bound = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            raise ConfigError(f"{name} {bound}, got {getattr(config, name)}")
    for name, f in FIELDS.items():
        bounds, value = f.metadata.get("bounds"), getattr(config, name)
        if bounds is not None and value is not None and not _within(value, bounds):
            inside = "be positive" if bounds == "(0, inf)" else f"lie in {bounds}"
            raise ConfigError(f"{name} must {inside}, got {value}")
    for name, f in FIELDS.items():
        valid = f.metadata.get("choices")
        values = getattr(config, name)
        # The grafting options are left to GraftOptions below, which words its own errors.
        for value in values if isinstance(values, list) else [values]:
            if valid and name not in GRAFT_OPTIONS and value not in valid:
                raise ConfigError(f"unknown {name} {shown(value)}; choose one of: {', '.join(valid)}")
    _check_reid_training(config)
    if config.graft_level == "filter" and config.scion != "external":
        raise ConfigError("graft_level filter grafts a neighbour's filters: it needs scion external")
    if config.devices is not None:
        try:
            config.device_ids()
        except ValueError:
            raise ConfigError(
                f"devices must be GPU numbers separated by commas, like 0,1,2,3; got {config.devices!r}"
            ) from None
        if config.device == "cpu":
            raise ConfigError("devices names GPUs; it cannot be combined with device cpu")
    if config.test_scoring == "last" and config.eval_every and not config.val_ids:
        raise ConfigError(
            "test_scoring last scores only validation before the last epoch: it needs val_ids (e.g. "
            "--val-ids 97), or set eval_every 0"
        )
    _check_population(config)
    try:
        GraftOptions(**config.graft_options())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return config


def _within(value: float, bounds: str) -> bool:
    low_closed, low, high, high_closed = parse_bounds(bounds)
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    return above and below


def method_fields(method: str) -> list[str]:
    """The fields only `method` (a population method) reads: those whose schema entry names it.
    (K, the learning-rate spread, the data order, the grafting+ teachers and bins, which also
    sizes every run's filter-health entropy, are every method's.)"""
    return [name for name, f in FIELDS.items() if f.metadata.get("method") == method]


def _check_population(config: TrainConfig) -> None:
    """The population method's settings."""
    method, spec = config.population, POPULATIONS[config.population]
    if config.models < spec.min_models:
        raise ConfigError(
            f"population {method} needs at least {spec.min_models} models (got models {config.models}); "
            "train one model with --population none"
        )
    if config.split is not None and not (math.isfinite(config.split) and 0 < config.split < 1):
        raise ConfigError(
            f"split must be a share of identities between 0 and 1 (e.g. 0.5), got {config.split}"
        )
    if config.split is not None and config.dataset != "folder":
        raise ConfigError(
            f"--split is for --dataset folder (your own crops); {config.dataset} has its own split"
        )
    if config.papa_closes is not None:
        if not (math.isfinite(config.papa_closes) and 0 < config.papa_closes < 1):
            raise ConfigError(f"papa_closes must be a share in (0, 1) (e.g. 0.9), got {config.papa_closes}")
        if config.papa_rate != TrainConfig.papa_rate:
            raise ConfigError(
                "papa_closes sets the pull's rate from the run's length: give it or papa_rate, not both"
            )
    if config.ema is not None and not (math.isfinite(config.ema) and 0 <= config.ema < 1):
        raise ConfigError(f"ema must be a decay in [0, 1) (e.g. 0.999), got {config.ema}")
    if config.ema_grid:
        if config.ema is None:
            raise ConfigError("ema_grid adds decays beside --ema's: give --ema too (e.g. --ema 0.99)")
        for decay in config.ema_grid:
            if not (math.isfinite(decay) and 0 <= decay < 1):
                raise ConfigError(f"ema_grid's decays must lie in [0, 1) (e.g. 0.998), got {decay}")
        names = [f"{decay:g}" for decay in [config.ema, *config.ema_grid]]  # (population/ema.py names)
        if len(set(names)) < len(names):
            raise ConfigError(
                f"ema_grid {config.ema_grid} repeats a decay, or two that agree to 6 digits (--ema is "
                f"{config.ema}); give decays that differ there"
            )
    if config.ema_warmup != "none" and config.ema is None:
        raise ConfigError(
            f"ema_warmup {config.ema_warmup} starts an EMA: give its decay with --ema (e.g. 0.998)"
        )


def check_method_settings(config: TrainConfig, given: dict) -> None:
    """A setting of another population method given (on the command line) for this run is
    refused: it would do nothing. A recipe's are not: one recipe serves every method."""
    for other in POPULATIONS:
        if other == config.population:
            continue
        for name in method_fields(other):
            if name in given and given[name] != getattr(TrainConfig(), name):
                raise ConfigError(
                    f"{name} is a setting of --population {other}, but this run's population is "
                    f"{config.population}; leave it out or choose --population {other}"
                )


def _check_reid_training(config: TrainConfig) -> None:
    """The losses, the sampler, the neck and the schedule's milestones."""
    if not config.loss or len(set(config.loss)) != len(config.loss):
        raise ConfigError(f"loss must name each of {', '.join(LOSSES)} at most once, got {config.loss}")
    if "triplet" in config.loss and config.sampler != "identity":
        raise ConfigError(
            "loss triplet needs --sampler identity: random batches hold few or no positive pairs"
        )
    if config.triplet_margin <= 0 or config.center_lr <= 0:
        name = "triplet_margin" if config.triplet_margin <= 0 else "center_lr"
        raise ConfigError(f"{name} must be positive, got {getattr(config, name)}")
    if config.sampler == "identity":
        if config.num_instances < 2:
            raise ConfigError(
                f"num_instances must be at least 2 for positive pairs, got {config.num_instances}"
            )
        if config.batch_size % config.num_instances or config.batch_size < 2 * config.num_instances:
            raise ConfigError(
                f"batch_size {config.batch_size} must be a multiple of num_instances {config.num_instances} "
                "holding at least 2 identities"
            )
    if config.last_stride not in (1, 2):
        raise ConfigError(f"last_stride must be 1 or 2, got {config.last_stride}")
    if config.scheduler == "multistep" and (
        not config.milestones
        or any(b <= a for a, b in zip(config.milestones, config.milestones[1:]))
        or config.milestones[0] < 1
    ):
        raise ConfigError(f"milestones must be increasing epochs of at least 1, got {config.milestones}")


def check_task_fields(config: TrainConfig, task: str) -> None:
    """A setting of another task changed from its default is refused (it would do nothing)."""
    defaults = TrainConfig()
    for name, f in FIELDS.items():
        other = f.metadata["task"]
        if other not in ("any", task) and getattr(config, name) != getattr(defaults, name):
            words = {"reid": "re-ID", "classification": "classification"}
            raise ConfigError(
                f"{name} is a {words[other]} setting; {config.dataset} is a {words[task]} dataset "
                "(leave it at its default)"
            )
