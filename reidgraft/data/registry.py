"""Every dataset by name, in one registry: the task it belongs to, how to load it, its default
backbone and its recipes. Adding a dataset takes one entry here and one YAML in `configs/`.

The registry is a plain dict from name to `DatasetSpec`; everything that asks "is this re-ID or
classification?" reads `spec.task`.
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
    load: Callable[[Path, bool], ReidSplits | ClassificationData]  # (data root, download allowed)
    default_arch: str
    recipes: Mapping[str, str]  # arch -> recipe file in configs/; other archs start from the default's
    # arch -> the strong-baseline recipe (triplet, identity sampler, BNNeck), chosen with --config
    strong: Mapping[str, str] = field(default_factory=dict)

    def recipe(self, arch: str | None) -> str:
        """The recipe file for `arch` (the default arch's recipe when `arch` has none of its own)."""
        return self.recipes.get(arch or self.default_arch, self.recipes[self.default_arch])


def _reid(name: str) -> Callable[[Path, bool], ReidSplits]:
    return lambda root, download=False: load_reid_splits(name, root)


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


def load_dataset(name: str, root: str | Path, *, download: bool = False) -> ReidSplits | ClassificationData:
    """The data of dataset `name` under `root` (re-ID splits or a classification set)."""
    return dataset_spec(name).load(Path(root).expanduser(), download)


def load_reid_dataset(name: str, root: str | Path) -> ReidSplits:
    """The re-ID splits of dataset `name` under `root`; ValueError for a name that is not re-ID."""
    return dataset_spec(name, REID).load(Path(root).expanduser(), False)


def load_run_splits(name: str, root: str | Path, recorded: dict[str, Any] | None, run: str) -> ReidSplits:
    """The splits a run was trained and evaluated on, or ValueError (one line) when the data
    under `root` differs from what the run recorded. A synthetic set that is missing is written
    again with the run's parameters (the generator is deterministic), never at the default size."""
    if name == "synthetic" and recorded and recorded.get("generator"):
        try:
            splits = synthetic_splits(Path(root).expanduser().resolve(), **recorded["generator"]["params"])
        except ValueError as error:
            raise ValueError(f"{run} was trained on another synthetic set: {error}") from None
    else:
        splits = load_reid_dataset(name, root)
    if recorded is None:  # a run from before data was recorded
        return splits

    found = splits.fingerprint()
    if found != recorded:
        counts = [
            f"{count} {split} images (the run had {recorded['images'].get(split)})"
            for split, count in found["images"].items()
            if recorded.get("images", {}).get(split) != count
        ]
        what = ", ".join(counts) if counts else "the same counts but other files or labels"
        raise ValueError(
            f"the {name} data under {root} is not what {run} was trained and evaluated on: {what}; "
            "point --root at the run's data"
        )
    return splits


def load_classification_dataset(name: str, root: str | Path, download: bool = False) -> ClassificationData:
    """The classification set `name` (CIFAR from `root`); ValueError for a name that is not one."""
    return dataset_spec(name, CLASSIFICATION).load(Path(root).expanduser(), download)
