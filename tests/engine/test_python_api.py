"""The Python training API: `reidgraft.resolve_config` resolves as the command does,
`reidgraft.train` trains and returns the run as a `TrainedRun`, ready for `FeatureExtractor`."""

import numpy as np
import pytest

import reidgraft
from reidgraft.config import ConfigError


def test_resolve_config_takes_the_commands_recipe_and_checks_the_settings():
    found = reidgraft.resolve_config(dataset="folder", arch="mobilenetv2_x1_0", epochs=3)
    assert found.recipe.name == "folder_mobilenetv2.yaml" and found.note is None
    assert found.config.epochs == 3 and found.config.weights == "imagenet"  # re-ID: ImageNet's by default
    assert (
        found.lines()[0] == "recipe: folder_mobilenetv2 (shipped: reidgraft/recipes/folder_mobilenetv2.yaml)"
    )
    other = reidgraft.resolve_config(dataset="folder", arch="osnet_x1_0")
    assert (
        other.recipe.name == "folder_resnet50.yaml"
        and "no folder recipe is shipped for osnet_x1_0" in other.note
    )
    assert reidgraft.resolve_config("synthetic_quick", models=2).config.models == 2
    with pytest.raises(ConfigError, match="epochs must be an integer, got 'many'"):
        reidgraft.resolve_config(epochs="many")
    with pytest.raises(ConfigError, match="unknown field 'epoch'"):
        reidgraft.resolve_config(epoch=3)
    with pytest.raises(ConfigError, match="config file not found: nowhere.yaml"):
        reidgraft.resolve_config("nowhere.yaml")


def test_train_returns_the_run_for_the_extractor(tmp_path):
    from reidgraft.data.datasets import synthetic_splits

    root = tmp_path / "data"
    synthetic_splits(root, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)
    said = []
    settings = dict(
        root=str(root), models=2, epochs=1, batch_size=8, height=32, width=16, optimizer="sgd", lr=0.01,
        device="cpu", val_ids=0, output=str(tmp_path / "run"),
    )  # fmt: skip
    run = reidgraft.train(log=said.append, **settings)
    assert isinstance(run, reidgraft.TrainedRun) and run.count == 2 and run.epoch == 1
    assert said[0] == "recipe: synthetic_quick (shipped: reidgraft/recipes/synthetic_quick.yaml)"
    assert len(run.metrics["final"]) == 2 and 0 <= run.metrics["final"][0]["mAP"] <= 1
    extractor = reidgraft.FeatureExtractor(run, device="cpu")
    assert extractor(np.zeros((32, 16, 3), np.uint8)).shape == (1, extractor.dim)
    with pytest.raises(ValueError, match="holds a run already|already holds a run"):
        reidgraft.train(log=said.append, **settings)  # never over a run
    with pytest.raises(ConfigError, match="a TrainConfig or settings, not both"):
        reidgraft.train(reidgraft.resolve_config().config, models=2)
