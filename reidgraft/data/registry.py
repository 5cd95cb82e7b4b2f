"""Every dataset by name, in one registry: the task it belongs to, how to check that its data is
there and how to load it, its default backbone and its recipes. Adding a dataset takes one entry
here (with its check and loader, in `datasets.py` or a module of its own) and one recipe in
`reidgraft/recipes/`.

The registry is a plain dict from name to `DatasetSpec`; everything that asks "is this re-ID or
classification?" reads `spec.task`. A dataset with options of its own (cuhk03's labelled boxes and
classic split, CIFAR's download) names them in `spec.options`, as the config's fields: its check
and loader receive them as keywords. Heavy modules (torchvision's CIFAR, torchreid's classes) are
imported only when a dataset of theirs is checked or loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import datasets
from .splits import ReidSplits

if TYPE_CHECKING:
    from .classification import ClassificationData

REID = "reid"
CLASSIFICATION = "classification"
DEFAULT_DATASET = "synthetic"


@dataclass(frozen=True)
class DatasetSpec:
    """What reidgraft knows about one dataset."""

    name: str
    task: str  # REID or CLASSIFICATION
    # (data root, **options named in `options`) -> the data; checks first that it is there
    load: Callable[..., ReidSplits | ClassificationData]
    # (data root, **options) -> None, or DataMissingError naming what is missing: no parsing,
    # before any work (the preflight calls it)
    check: Callable[..., None]
    default_arch: str
    recipes: Mapping[
        str, str
    ]  # arch -> shipped recipe (reidgraft/recipes/); other archs start from the default's
    # arch -> the strong-baseline recipe (triplet, identity sampler, BNNeck), chosen with --config
    strong: Mapping[str, str] = field(default_factory=dict)
    # The --metric-protocol its published re-ID numbers use. Informational: the config's
    # metric_protocol is always the user's explicit choice (default market1501).
    protocol: str = "market1501"
    # config fields the check and loader take as keywords (cuhk03_labeled, download, ...)
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

    def _own(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        return {name: options[name] for name in self.options if options and name in options}

    def _root(self, root: str | Path) -> Path:
        root = Path(root).expanduser()
        return root.resolve() if self.task == REID else root

    def check_data(self, root: str | Path, options: Mapping[str, Any] | None = None) -> None:
        """DataMissingError (one line) unless the data is under `root`; reads no image."""
        self.check(self._root(root), **self._own(options))

    def load_with(
        self, root: str | Path, options: Mapping[str, Any] | None = None
    ) -> ReidSplits | ClassificationData:
        """The data under `root`; of `options`, only those this dataset takes reach its loader."""
        return self.load(self._root(root), **self._own(options))


def _folder(function: str) -> Callable[..., Any]:
    """`folder.py`'s check or loader, imported when called (it imports torchreid)."""

    def call(root: Path, **options: Any) -> Any:
        from . import folder

        return getattr(folder, function)(root, **options)

    return call


def _cuhk01(function: str) -> Callable[..., Any]:
    """`cuhk01.py`'s check or loader."""

    def call(root: Path) -> Any:
        from . import cuhk01

        return getattr(cuhk01, function)(root)

    return call


def _classification(name: str, function: str) -> Callable[..., Any]:
    """`classification.py`'s check or loader for `name`, imported when called (torchvision)."""

    def call(root: Path, download: bool = False) -> Any:
        from . import classification

        return getattr(classification, function)(name, root, download=download)

    return call


def _cifar_recipes(dataset: str) -> dict[str, str]:
    archs = ("resnet32", "resnet56", "resnet110", "mobilenetv2", "wrn28_10")
    return {arch: f"{dataset}_{arch}.yaml" for arch in archs}


def _classification_spec(name: str, default_arch: str, recipes: Mapping[str, str]) -> DatasetSpec:
    return DatasetSpec(
        name, CLASSIFICATION, _classification(name, "load_classification_data"),
        _classification(name, "check_classification_data"), default_arch, recipes, options=("download",),
    )  # fmt: skip


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "market1501", REID, datasets.MARKET1501.load, datasets.MARKET1501.check, "resnet50",
            {"resnet50": "market1501_resnet50.yaml", "mobilenetv2_x1_0": "market1501_mobilenetv2.yaml"},
            {
                "resnet50": "market1501_resnet50_bot.yaml",
                "mobilenetv2_x1_0": "market1501_mobilenetv2_bot.yaml",
            },
        ),
        DatasetSpec(
            "dukemtmcreid", REID, datasets.DUKEMTMCREID.load, datasets.DUKEMTMCREID.check, "resnet50",
            {"resnet50": "duke_resnet50.yaml", "mobilenetv2_x1_0": "duke_mobilenetv2.yaml"},
            {"resnet50": "duke_resnet50_bot.yaml"},
        ),
        DatasetSpec(
            "cuhk03", REID, datasets.load_cuhk03, datasets.check_cuhk03, "resnet50",
            {"resnet50": "cuhk03_resnet50.yaml"}, {"resnet50": "cuhk03_resnet50_bot.yaml"},
            options=("cuhk03_labeled", "cuhk03_classic_split"),
            protocol_when={"cuhk03_classic_split": "cuhk03"},
        ),
        DatasetSpec(
            "msmt17", REID, datasets.load_msmt17, datasets.check_msmt17, "resnet50",
            {"resnet50": "msmt17_resnet50.yaml"}, {"resnet50": "msmt17_resnet50_bot.yaml"},
        ),
        DatasetSpec(
            "cuhk01", REID, _cuhk01("load_cuhk01"), _cuhk01("check_cuhk01"), "mobilenetv2_x1_0",
            {"mobilenetv2_x1_0": "cuhk01_mobilenetv2.yaml", "resnet50": "cuhk01_resnet50.yaml"},
        ),
        DatasetSpec(
            "folder", REID, _folder("load_folder_splits"), _folder("check_folder"), "resnet50",
            {"resnet50": "folder_resnet50.yaml", "mobilenetv2_x1_0": "folder_mobilenetv2.yaml"},
            {"resnet50": "folder_resnet50_bot.yaml", "mobilenetv2_x1_0": "folder_mobilenetv2_bot.yaml"},
            options=("split", "split_seed"),
        ),
        DatasetSpec(
            "synthetic", REID, datasets.synthetic_splits, datasets.check_synthetic, "mobilenetv2_x1_0",
            {"mobilenetv2_x1_0": "synthetic_quick.yaml"},
            {"mobilenetv2_x1_0": "synthetic_bot.yaml"},
        ),
        _classification_spec("cifar10", "resnet56", _cifar_recipes("cifar10")),
        _classification_spec("cifar100", "mobilenetv2", _cifar_recipes("cifar100")),
        _classification_spec("digits", "resnet20", {"resnet20": "digits_quick.yaml"}),
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
    return dataset_spec(name).load_with(root, {**(options or {}), "download": download})


def load_reid_dataset(name: str, root: str | Path, options: Mapping[str, Any] | None = None) -> ReidSplits:
    """The re-ID splits of dataset `name` under `root`; ValueError for a name that is not re-ID."""
    return dataset_spec(name, REID).load_with(root, options)


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
            splits = datasets.synthetic_splits(
                Path(root).expanduser().resolve(), **recorded["generator"]["params"]
            )
        except ValueError as error:
            raise ValueError(f"{run} was trained on another synthetic set: {error}") from None
    else:
        splits = load_reid_dataset(name, root, options)
    if recorded is None:  # a run from before data was recorded
        return splits

    found = splits.fingerprint()
    if found != recorded:
        raise ValueError(
            f"the {name} data under {root} is not what {run} was trained and evaluated on: "
            f"{data_difference(found, recorded)}; point --root at the run's data"
        )
    return splits


def data_difference(found: Mapping[str, Any], recorded: Mapping[str, Any]) -> str:
    """How data with fingerprint `found` differs from the `recorded` one, in a few words."""
    if found.get("dataset") != recorded.get("dataset"):
        return f"dataset {found.get('dataset')} (the run had {recorded.get('dataset')})"
    counts = [
        f"{count} {split} images (the run had {recorded['images'].get(split)})"
        for split, count in (found.get("images") or {}).items()
        if recorded.get("images", {}).get(split) != count
    ]
    options = [
        f"{option} {value} (the run had {recorded.get('options', {}).get(option)})"
        for option, value in (found.get("options") or {}).items()
        if recorded.get("options", {}).get(option) != value
    ]
    return ", ".join(options + counts) or "the same counts but other files or labels"


def load_classification_dataset(name: str, root: str | Path, download: bool = False) -> ClassificationData:
    """The classification set `name` (CIFAR from `root`); ValueError for a name that is not one."""
    return dataset_spec(name, CLASSIFICATION).load_with(root, {"download": download})
