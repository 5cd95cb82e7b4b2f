"""The compute-matched baselines and the paired bootstrap behind reidgraft-compare."""

import numpy as np
import pytest
import torch

from reidgraft.config import build_config
from reidgraft.data.datasets import synthetic_splits
from reidgraft.engine.comparison import bootstrap_difference, load_scores, save_scores, weight_average
from reidgraft.engine.tasks import make_task


class PooledColours(torch.nn.Module):
    """A tiny stand-in for a re-ID backbone with batch norm: pooled colours through a fixed random
    projection. Its features of different synthetic people are far apart (no near-ties), so exact
    equalities can be asserted."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.pool = torch.nn.AdaptiveAvgPool2d((4, 2))
        self.project = torch.nn.Linear(3 * 4 * 2, 16)
        self.bn = torch.nn.BatchNorm1d(16)

    def forward(self, images):
        return self.bn(self.project(self.pool(images).flatten(1)))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    config = build_config(
        dataset="synthetic", root=str(tmp_path_factory.mktemp("data")), height=32, width=16, metric="cosine",
        eval_batch_size=64, batch_size=16, device="cpu",
    )  # fmt: skip
    splits = synthetic_splits(
        config.root, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16
    )
    return make_task(config, splits)


def trained(task, seed):
    """A PooledColours whose batch norm has seen training images (so it is not the identity)."""
    model = PooledColours(seed)
    return weight_average(task, [model]).eval()


def test_the_ensemble_of_two_identical_models_equals_one_model(task):
    model = trained(task, 0)
    alone = task.item_scores([model])[0]
    together = task.ensemble_scores([model, model])
    assert 0.2 < alone["mAP"].mean() < 1.0  # a ranking with something to lose
    for key in alone:
        np.testing.assert_allclose(together[key], alone[key], atol=1e-6)


def test_the_weight_average_of_identical_models_is_the_model(task):
    model = trained(task, 1)
    average = weight_average(task, [model, model])
    for key, tensor in model.state_dict().items():  # weights and re-estimated statistics alike
        torch.testing.assert_close(average.state_dict()[key], tensor)
    assert not average.training
    alone, averaged = task.item_scores([model, average])
    np.testing.assert_allclose(averaged["mAP"], alone["mAP"])
    # two different models average to neither; batch norm is re-estimated, not averaged
    other = trained(task, 2)
    mixed = weight_average(task, [model, other])
    # (the running mean is linear in the weights here, so it is the variance that shows it)
    assert not torch.allclose(mixed.bn.running_var, (model.bn.running_var + other.bn.running_var) / 2)


def test_the_paired_bootstrap_interval_holds_the_mean_difference():
    rng = np.random.default_rng(1)
    theirs = rng.random((3, 200))
    ours = theirs + 0.05 + 0.01 * rng.standard_normal((3, 200))
    difference, (low, high) = bootstrap_difference(ours, theirs)
    assert difference == pytest.approx((ours - theirs).mean())
    assert low < difference < high and 0.04 < low and high < 0.06
    same, (low, high) = bootstrap_difference(theirs, theirs)
    assert same == low == high == 0.0
    with pytest.raises(ValueError, match="same \\(seeds, items\\) shape"):
        bootstrap_difference(ours, theirs[:2])


def test_kept_scores_come_back_only_under_their_key(task, tmp_path):
    scores = task.item_scores([trained(task, 1), trained(task, 2)])
    path = tmp_path / "compare-scores-models.npz"
    save_scores(path, "key-a", scores)
    kept = load_scores(path, "key-a")
    assert len(kept) == 2 and [set(s) for s in kept] == [{"mAP", "rank1"}] * 2
    for ours, theirs in zip(kept, scores, strict=True):
        for metric in ours:
            np.testing.assert_array_equal(ours[metric], theirs[metric])
    assert not np.array_equal(kept[0]["mAP"], kept[1]["mAP"])  # the models stay apart, in order
    assert load_scores(path, "key-b") is None
    assert load_scores(tmp_path / "missing.npz", "key-a") is None
    path.write_bytes(path.read_bytes()[:200])  # a damaged file is scored again, not an error
    assert load_scores(path, "key-a") is None
    assert [p.name for p in tmp_path.iterdir()] == ["compare-scores-models.npz"]
