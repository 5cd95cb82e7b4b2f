"""Every value of a config checked before any work: the first bad field is a ConfigError whose
one line names it and what it may be. The bounds of whole numbers come from each field's
`minimum`; the rest are written here."""

from __future__ import annotations

import dataclasses
import math

from ..grafting.options import GraftOptions
from .schema import FIELDS, GRAFT_OPTIONS, LOSSES, ConfigError, TrainConfig, shown


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
    if config.ring_timeout <= 0:
        raise ConfigError(f"ring_timeout must be positive, got {config.ring_timeout}")
    if config.lr <= 0:
        raise ConfigError(f"lr must be positive, got {config.lr}")
    for name, f in FIELDS.items():
        valid = f.metadata.get("choices")
        values = getattr(config, name)
        # The grafting options are left to GraftOptions below, which words its own errors.
        for value in values if isinstance(values, list) else [values]:
            if valid and name not in GRAFT_OPTIONS and value not in valid:
                raise ConfigError(f"unknown {name} {shown(value)}; choose one of: {', '.join(valid)}")
    _check_reid_training(config)
    if not 0 <= config.label_smooth < 1:
        raise ConfigError(f"label_smooth must lie in [0, 1), got {config.label_smooth}")
    if not 0 < config.warmup_factor <= 1:
        raise ConfigError(f"warmup_factor must lie in (0, 1], got {config.warmup_factor}")
    if config.scion_threshold <= 0:
        raise ConfigError(f"scion_threshold must be positive, got {config.scion_threshold}")
    if not 0 < config.noise_decay < 1:
        raise ConfigError(f"noise_decay must lie in (0, 1), got {config.noise_decay}")
    if not 0 < config.filter_fraction <= 1:
        raise ConfigError(f"filter_fraction must lie in (0, 1], got {config.filter_fraction}")
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
    _check_population(config)
    try:
        GraftOptions(**config.graft_options())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return config


# The settings only grafting reads: one changed under another population method is refused,
# since it would do nothing. (K, the learning-rate spread, the data order and the grafting+
# teachers are every method's.)
GRAFT_ONLY = (
    *(name for name in GRAFT_OPTIONS if name != "bins"),  # (bins also sizes filter_health's entropy)
    "scion", "scion_threshold", "noise_decay", "graft_level", "filter_fraction", "eval_after_graft",
)  # fmt: skip


def method_fields(method: str) -> list[str]:
    """The fields only `method` (a population method) reads."""
    if method == "graft":
        return list(GRAFT_ONLY)
    return [name for name in FIELDS if name.startswith(f"{method}_")]


def _check_population(config: TrainConfig) -> None:
    """The population method's settings."""
    method = config.population
    if method in ("dml", "papa") and config.models < 2:
        raise ConfigError(
            f"population {method} needs at least 2 models (got models {config.models}); "
            "train one model with --population none"
        )
    if config.dml_temperature <= 0:
        raise ConfigError(f"dml_temperature must be positive, got {config.dml_temperature}")
    if not 0 < config.papa_rate <= 1:
        raise ConfigError(f"papa_rate must lie in (0, 1], got {config.papa_rate}")
    if config.split is not None and not (math.isfinite(config.split) and 0 < config.split < 1):
        raise ConfigError(
            f"split must be a share of identities between 0 and 1 (e.g. 0.5), got {config.split}"
        )
    if config.split is not None and config.dataset != "folder":
        raise ConfigError(
            f"--split is for --dataset folder (your own crops); {config.dataset} has its own split"
        )
    if config.ema is not None and not (math.isfinite(config.ema) and 0 <= config.ema < 1):
        raise ConfigError(f"ema must be a decay in [0, 1) (e.g. 0.999), got {config.ema}")


def check_method_settings(config: TrainConfig, given: dict) -> None:
    """A setting of another population method given (on the command line) for this run is
    refused: it would do nothing. A recipe's are not: one recipe serves every method."""
    for other in ("graft", "dml", "papa"):
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
