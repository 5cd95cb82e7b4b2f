"""Typed training configuration: defaults, then a YAML recipe, then command-line flags.

One flat dataclass, so every field can be named in a YAML file and overridden by a flag of the
same name (`batch_size` <-> `--batch-size`). `ConfigError` carries a one-line message for the
CLI to print.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .grafting import GraftOptions

OPTIMIZERS = ("amsgrad", "adam", "sgd")
SCHEDULERS = ("step", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A configuration value a user gave is wrong; the message says which and how to fix it."""


def default_data_root() -> str:
    return os.environ.get("REIDGRAFT_DATA", "./data")


@dataclass
class TrainConfig:
    # data
    dataset: str = "synthetic"
    root: str = field(default_factory=default_data_root)
    height: int = 128
    width: int = 64
    transforms: list[str] = field(default_factory=lambda: ["random_flip", "random_crop"])
    workers: int = 0
    download: bool = False  # classification only: let torchvision fetch CIFAR when it is absent
    # model
    arch: str = "mobilenetv2_x1_0"
    weights: str | None = None  # a local file, or "deep-sort-mobilenetv2"
    # the ring
    models: int = 4
    graft: bool = True
    diverse_lr: bool = True  # cosine-spaced initial learning rates (GRAFTING.md 5)
    # grafting options, with the grafting engine's defaults (the papers')
    criterion: str = GraftOptions.criterion
    A: float = GraftOptions.A
    c: float = GraftOptions.c
    bins: int = GraftOptions.bins
    fixed_alpha: float = GraftOptions.fixed_alpha
    graft_head: bool = GraftOptions.graft_head
    ring_timeout: float = 180.0  # seconds a distributed rank waits for its neighbours
    # grafting+
    teacher: list[str] = field(default_factory=list)  # checkpoint files, "PATH" or "PATH:k"
    kd_tau: float = 2.0
    kd_weight: float = 1.0
    # optimisation
    epochs: int = 60
    batch_size: int = 32
    optimizer: str = "amsgrad"
    lr: float = 3e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "step"
    step_size: int = 20
    gamma: float = 0.1
    label_smooth: float = 0.1
    # evaluation
    eval_every: int = 0  # 0: only at the end
    eval_batch_size: int = 128
    metric: str = "euclidean"
    max_rank: int = 50
    # run
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    output: str | None = None

    def validate(self) -> TrainConfig:
        """Check every value; raise ConfigError naming the first bad field."""
        positive = ("height", "width", "models", "epochs", "batch_size", "eval_batch_size", "bins")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("workers", "eval_every", "weight_decay", "label_smooth", "kd_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.ring_timeout <= 0:
            raise ConfigError(f"ring_timeout must be positive, got {self.ring_timeout}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        choices = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "device": DEVICES}
        choices["metric"] = ("euclidean", "cosine")
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of: {', '.join(valid)}"
                )
        if not 0 <= self.label_smooth < 1:
            raise ConfigError(f"label_smooth must lie in [0, 1), got {self.label_smooth}")
        try:
            GraftOptions(**self.graft_options())
        except ValueError as error:
            raise ConfigError(str(error)) from None
        return self

    def graft_options(self) -> dict[str, Any]:
        """The fields `GraftRing` takes, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(GraftOptions)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(name: str, value: Any) -> Any:
    """Check a YAML value against the field's type (YAML already parsed numbers and booleans)."""
    default = getattr(TrainConfig(), name)
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        value = float(value)
    elif isinstance(default, list):
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a recipe; unknown keys are errors (a typo would otherwise be silently ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r} in {path}; valid fields: {', '.join(FIELDS)}")
    return {name: _coerce(name, value) for name, value in data.items()}


CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"

# (dataset, arch) -> the recipe `tools/train.py` starts from when no --config is given.
RECIPES = {
    ("market1501", "resnet50"): "market1501_resnet50.yaml",
    ("market1501", "mobilenetv2_x1_0"): "market1501_mobilenetv2.yaml",
    ("dukemtmcreid", "resnet50"): "duke_resnet50.yaml",
    ("dukemtmcreid", "mobilenetv2_x1_0"): "duke_mobilenetv2.yaml",
}
DEFAULT_RECIPE = "synthetic_quick.yaml"
CIFAR_ARCHS = ("resnet32", "resnet56", "resnet110", "mobilenetv2", "wrn28_10")
for _dataset in ("cifar10", "cifar100"):
    RECIPES.update({(_dataset, arch): f"{_dataset}_{arch}.yaml" for arch in CIFAR_ARCHS})
# The default model when only a classification dataset is named.
DEFAULT_ARCH = {"cifar10": "resnet56", "cifar100": "mobilenetv2"}


def recipe_for(dataset: str | None, arch: str | None) -> Path:
    """The recipe for a dataset and backbone: the paper's for Market/Duke (ResNet50 unless
    MobileNetV2 is asked for; another backbone starts from the ResNet50 recipe) and for CIFAR
    (MobileNetV2 on CIFAR-100 and ResNet-56 on CIFAR-10 unless another is asked for), the quick
    digits recipe for `digits`, else the quick synthetic one."""
    if dataset in ("market1501", "dukemtmcreid"):
        name = RECIPES.get((dataset, arch or "resnet50"), RECIPES[(dataset, "resnet50")])
    elif dataset in DEFAULT_ARCH:
        default = RECIPES[(dataset, DEFAULT_ARCH[dataset])]
        name = RECIPES.get((dataset, arch or DEFAULT_ARCH[dataset]), default)
    elif dataset == "digits":
        name = "digits_quick.yaml"
    else:
        name = DEFAULT_RECIPE
    return CONFIGS_DIR / name


def build_config(base: dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then `base` (a recipe), then `overrides` whose value is not None; validated."""
    values = dict(base or {})
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r}; valid fields: {', '.join(FIELDS)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values).validate()
