"""What a task gives the trainer: images normalised as the backbone's spec says, in training,
in evaluation and in the extractor alike (a backbone whose statistics are not ImageNet's)."""

import dataclasses

import numpy as np
import pytest
from torchvision import transforms as T

import reidgraft
from reidgraft.config import build_config
from reidgraft.data.datasets import synthetic_splits
from reidgraft.engine import Trainer
from reidgraft.engine.tasks import make_task
from reidgraft.models.registry import backbones

TINY = dict(train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)
OWN = dict(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return synthetic_splits(tmp_path_factory.mktemp("data"), **TINY)


@pytest.fixture
def own_statistics(monkeypatch):
    """MobileNetV2 as if its weights had been trained on inputs with other statistics."""
    spec = backbones()["mobilenetv2_x1_0"]
    monkeypatch.setitem(backbones(), "mobilenetv2_x1_0", dataclasses.replace(spec, **OWN))


def config(**overrides):
    values = dict(
        dataset="synthetic", arch="mobilenetv2_x1_0", models=1, epochs=1, batch_size=8, height=32, width=16,
        lr=0.01, optimizer="sgd", eval_batch_size=32, device="cpu", weights="none", amp="none",
        channels_last=False,
    )  # fmt: skip
    return build_config(**{**values, **overrides})


def normalisations(loader) -> list[tuple]:
    return [
        (step.mean, step.std) for step in loader.dataset.transform.transforms if isinstance(step, T.Normalize)
    ]


def test_training_and_evaluation_normalise_by_the_backbones_statistics(splits, own_statistics):
    task = make_task(config(), splits)
    (loader,) = task.train_loaders([0])
    assert normalisations(loader) == [(list(OWN["mean"]), list(OWN["std"]))]
    images, *_ = next(iter(loader))
    # a white image is (1 - mean) / std after normalisation: its largest values say which statistics
    assert (
        images.amax().item() <= max((1 - m) / s for m, s in zip(OWN["mean"], OWN["std"], strict=True)) + 1e-5
    )


def test_evaluation_and_the_extractor_agree_for_a_backbone_with_other_statistics(
    splits, tmp_path, own_statistics
):
    trainer = Trainer(config(output=str(tmp_path)), splits, tmp_path, log=lambda line: None)
    trainer.fit()
    query, _ = trainer.task.features([trainer.members[0].model])
    extractor = reidgraft.FeatureExtractor(tmp_path, model=0, device="cpu", normalize=False)
    assert (extractor.mean, extractor.std) == (OWN["mean"], OWN["std"])
    np.testing.assert_allclose(
        extractor([path for path, _, _ in splits.query]), query[0].numpy(), rtol=1e-5, atol=1e-5
    )
