"""One registry says which task every dataset belongs to; adding a dataset is one entry."""

import pytest

from reidgraft.config import ConfigError, build_config, recipe_for
from reidgraft.data import (
    CLASSIFICATION,
    DATASETS,
    REID,
    DatasetSpec,
    ReidSplits,
    dataset_names,
    dataset_spec,
    load_classification_dataset,
    load_reid_dataset,
)
from reidgraft.engine.preflight import check_names, preflight
from reidgraft.engine.runs import load_data
from reidgraft.engine.tasks import ClassificationTask, ReidTask, make_task


def test_every_dataset_has_a_task_and_a_default_recipe():
    assert dataset_names(REID) == [
        "market1501",
        "dukemtmcreid",
        "cuhk03",
        "msmt17",
        "cuhk01",
        "folder",
        "synthetic",
    ]
    assert dataset_names(CLASSIFICATION) == ["cifar10", "cifar100", "digits"]
    for spec in DATASETS.values():
        assert spec.task in (REID, CLASSIFICATION)
        assert recipe_for(spec.name, None).name == spec.recipes[spec.default_arch]


def test_a_dataset_of_the_other_task_is_named_as_such():
    with pytest.raises(
        ValueError, match="dataset 'digits' is a classification dataset; this needs one of: market"
    ):
        load_reid_dataset("digits", "unused")
    with pytest.raises(ValueError, match="dataset 'synthetic' is a reid dataset; this needs one of: cifar10"):
        load_classification_dataset("synthetic", "unused")


def test_a_new_dataset_is_one_entry(monkeypatch, tmp_path):
    """An entry with its loader and recipe: the recipe is found, names are checked against its
    task, its data loads, and the trainer's task follows it; nothing else was told about it."""
    splits = ReidSplits("street", [("a.jpg", 0, 0), ("b.jpg", 1, 1)], [("q.jpg", 5, 0)], [("g.jpg", 5, 1)])
    checked = []
    spec = DatasetSpec(
        "street", REID, lambda root: splits, lambda root: checked.append(root), "resnet50",
        {"resnet50": "duke_resnet50.yaml"},
    )  # fmt: skip
    monkeypatch.setitem(DATASETS, "street", spec)
    assert dataset_spec("street") is spec
    assert recipe_for("street", "osnet_x1_0").name == "duke_resnet50.yaml"
    config = build_config(dataset="street", arch="resnet50", root=str(tmp_path))
    check_names(config)
    preflight(config)
    assert checked == [tmp_path.resolve()]  # its data was looked for before any work
    assert load_data(config, log=lambda line: None) is splits
    assert isinstance(make_task(config, splits), ReidTask)
    with pytest.raises(ConfigError, match="arch 'resnet56' is a CIFAR classifier"):
        check_names(build_config(dataset="street", arch="resnet56"))


def test_unknown_names_never_fall_back():
    with pytest.raises(ConfigError, match="unknown dataset 'market-1501'; choose one of: market1501"):
        recipe_for("market-1501", None)
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        check_names(build_config(dataset="mnist"))


def test_classification_datasets_get_the_classification_task():
    digits = load_classification_dataset("digits", "unused")
    assert isinstance(make_task(build_config(dataset="digits", arch="resnet20"), digits), ClassificationTask)
