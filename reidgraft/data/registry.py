"""Every dataset by name, in one registry: the task it belongs to, how to load it, its default
backbone and its recipes. Adding a dataset takes one entry here and one recipe in `reidgraft/recipes/`.

The registry is a plain dict from name to `DatasetSpec`; everything that asks "is this re-ID or
classification?" reads `spec.task`. A dataset with options of its own (cuhk03's labelled boxes and
classic split) names them in `spec.options`, as the config's fields: its loader receives them as
keywords, other loaders are called as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .classification import ClassificationData, load_classification_data
from .datasets import ReidSplits, load_reid_splits, synthetic_splits

REID = "reid"
CLASSIFICATION = "classification"
DEFAULT_DATASET = "synthetic"


@dataclass(frozen=True)
class DatasetSpec:
    """What reidgraft knows about one dataset."""

    name: str
    task: str  # REID or CLASSIFICATION
    # (data root, download allowed, **options named in `options`) -> the data
    load: Callable[..., ReidSplits | ClassificationData]
    default_arch: str
    recipes: Mapping[
        str, str
    ]  # arch -> shipped recipe (reidgraft/recipes/); other archs start from the default's
    # arch -> the strong-baseline recipe (triplet, identity sampler, BNNeck), chosen with --config
    strong: Mapping[str, str] = field(default_factory=dict)
    # The --metric-protocol its published re-ID numbers use. Informational: the config's
    # metric_protocol is always the user's explicit choice (default market1501).
    protocol: str = "market1501"
    # config fields the loader takes as keywords (cuhk03_labeled, ...)
    options: tuple[str, ...] = ()
    # option -> the protocol published numbers use when that option is on
    protocol_when: Mapping[str, str] = field(default_factory=dict)

    def recipe(self, arch: str | None) -> str:
        """The recipe file for `arch` (the default arch's recipe when `arch` has none of its own)."""
        return self.recipes.get(arch or self.default_arch, self.recipes[self.default_arch])

    def published_protocol(self, options: Mapping[str, Any] | None = None) -> str:
        """The metric protocol published results use for this dataset with these options."""
        on = [name for name, protocol in self.protocol_when.items() if (options or {}).get(name)]
        return self.protocol_when[on[0]] if on else self.protocol

    def load_with(
        self, root: Path, download: bool = False, options: Mapping[str, Any] | None = None
    ) -> ReidSplits | ClassificationData:
        """The data under `root`; of `options`, only those this dataset takes reach its loader."""
        own = {name: options[name] for name in self.options if options and name in options}
        return self.load(root, download, **own)


def _reid(name: str) -> Callable[..., ReidSplits]:
    return lambda root, download=False, **options: load_reid_splits(name, root, **options)


def _classification(name: str) -> Callable[[Path, bool], ClassificationData]:
    return lambda root, download=False: load_classification_data(name, root, download=download)


def _cifar_recipes(dataset: str) -> dict[str, str]:
    archs = ("resnet32", "resnet56", "resnet110", "mobilenetv2", "wrn28_10")
    return {arch: f"{dataset}_{arch}.yaml" for arch in archs}


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "market1501", REID, _reid("market1501"), "resnet50",
            {"resnet50": "market1501_resnet50.yaml", "mobilenetv2_x1_0": "market1501_mobilenetv2.yaml"},
            {
                "resnet50": "market1501_resnet50_bot.yaml",
                "mobilenetv2_x1_0": "market1501_mobilenetv2_bot.yaml",
            },
        ),
        DatasetSpec(
            "dukemtmcreid", REID, _reid("dukemtmcreid"), "resnet50",
            {"resnet50": "duke_resnet50.yaml", "mobilenetv2_x1_0": "duke_mobilenetv2.yaml"},
            {"resnet50": "duke_resnet50_bot.yaml"},
        ),
        DatasetSpec(
            "cuhk03", REID, _reid("cuhk03"), "resnet50",
            {"resnet50": "cuhk03_resnet50.yaml"}, {"resnet50": "cuhk03_resnet50_bot.yaml"},
            options=("cuhk03_labeled", "cuhk03_classic_split"),
            protocol_when={"cuhk03_classic_split": "cuhk03"},
        ),
        DatasetSpec(
            "msmt17", REID, _reid("msmt17"), "resnet50",
            {"resnet50": "msmt17_resnet50.yaml"}, {"resnet50": "msmt17_resnet50_bot.yaml"},
        ),
        DatasetSpec(
            "folder", REID, _reid("folder"), "resnet50",
            {"resnet50": "folder_resnet50.yaml"}, {"resnet50": "folder_resnet50_bot.yaml"},
        ),
        DatasetSpec(
            "synthetic", REID, _reid("synthetic"), "mobilenetv2_x1_0",
            {"mobilenetv2_x1_0": "synthetic_quick.yaml"},
            {"mobilenetv2_x1_0": "synthetic_bot.yaml"},
        ),
        DatasetSpec(
            "cifar10", CLASSIFICATION, _classification("cifar10"), "resnet56", _cifar_recipes("cifar10")
        ),
        DatasetSpec(
            "cifar100", CLASSIFICATION, _classification("cifar100"), "mobilenetv2", _cifar_recipes("cifar100")
        ),
        DatasetSpec(
            "digits", CLASSIFICATION, _classification("digits"), "resnet20", {"resnet20": "digits_quick.yaml"}
        ),
    )
}  # fmt: skip


def dataset_spec(name: str, task: str | None = None) -> DatasetSpec:
    """The spec of dataset `name` (of `task`, when given); ValueError listing the valid names."""
    valid = dataset_names(task)
    if name in DATASETS and name not in valid:
        raise ValueError(
            f"dataset {name!r} is a {DATASETS[name].task} dataset; this needs one of: {', '.join(valid)}"
        )
    if name not in valid:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(valid)}")
    return DATASETS[name]


def dataset_names(task: str | None = None) -> list[str]:
    return [spec.name for spec in DATASETS.values() if task in (None, spec.task)]


def load_dataset(
    name: str, root: str | Path, *, download: bool = False, options: Mapping[str, Any] | None = None
) -> ReidSplits | ClassificationData:
    """The data of dataset `name` under `root` (re-ID splits or a classification set). `options`
    may hold any dataset's options (the config's fields); each dataset takes only its own."""
    return dataset_spec(name).load_with(Path(root).expanduser(), download, options)


def load_reid_dataset(name: str, root: str | Path, options: Mapping[str, Any] | None = None) -> ReidSplits:
    """The re-ID splits of dataset `name` under `root`; ValueError for a name that is not re-ID."""
    return dataset_spec(name, REID).load_with(Path(root).expanduser(), False, options)


def load_run_splits(
    name: str,
    root: str | Path,
    recorded: dict[str, Any] | None,
    run: str,
    options: Mapping[str, Any] | None = None,
) -> ReidSplits:
    """The splits a run was trained and evaluated on, or ValueError (one line) when the data
    under `root` differs from what the run recorded. A synthetic set that is missing is written
    again with the run's parameters (the generator is deterministic), never at the default size.
    `options`: the dataset's options the run was trained with (cuhk03's)."""
    if name == "synthetic" and recorded and recorded.get("generator"):
        try:
            splits = synthetic_splits(Path(root).expanduser().resolve(), **recorded["generator"]["params"])
        except ValueError as error:
            raise ValueError(f"{run} was trained on another synthetic set: {error}") from None
    else:
        splits = load_reid_dataset(name, root, options)
    if recorded is None:  # a run from before data was recorded
        return splits

    found = splits.fingerprint()
    if found != recorded:
        counts = [
            f"{count} {split} images (the run had {recorded['images'].get(split)})"
            for split, count in found["images"].items()
            if recorded.get("images", {}).get(split) != count
        ]
        options = [
            f"{option} {value} (the run had {recorded.get('options', {}).get(option)})"
            for option, value in (found.get("options") or {}).items()
            if recorded.get("options", {}).get(option) != value
        ]
        what = ", ".join(options + counts) or "the same counts but other files or labels"
        raise ValueError(
            f"the {name} data under {root} is not what {run} was trained and evaluated on: {what}; "
            "point --root at the run's data"
        )
    return splits


def load_classification_dataset(name: str, root: str | Path, download: bool = False) -> ClassificationData:
    """The classification set `name` (CIFAR from `root`); ValueError for a name that is not one."""
    return dataset_spec(name, CLASSIFICATION).load_with(Path(root).expanduser(), download)
