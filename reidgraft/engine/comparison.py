"""What `reidgraft-compare` measures beyond each run's own metrics: per-query (or per-image)
scores for paired comparisons, the compute-matched baselines built from K independent models
(their feature ensemble and their weight average), and paired bootstrap intervals.

Per-item scores: re-ID gives each valid query its AP (`mAP`) and whether its first match is at
rank 1 (`rank1`); classification gives each test image whether the top-1 class is right
(`top1`). Their means are the usual metrics, and the same items line up across models and seeds,
so differences can be paired.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.classification import ClassificationData, build_classification_test_loader
from ..data.loaders import build_test_loader
from ..evaluation import evaluate
from ..evaluation.retrieval import RetrievalResult
from ..files import read_keyed_arrays, write_keyed_arrays
from .features import model_device, predict_logits
from .tasks import ClassificationTask, ReidTask

Scores = dict[str, np.ndarray]  # metric -> one value per query or test image

BN_IMAGES = 4096  # training images that re-estimate an averaged model's BN statistics (at most)
SCORES_FORMAT = 1  # the layout of a saved scores file; another one is simply scored again


def _retrieval_scores(result: RetrievalResult) -> Scores:
    """Per valid query: its AP, and its rank-1 hits as the protocol counts them (under cuhk03,
    the share of its single-gallery-shot draws), so both average to the run's own metrics."""
    return {"mAP": result.average_precisions, "rank1": result.rank1_hits}


def _reid_evaluate(task: ReidTask, query: torch.Tensor, gallery: torch.Tensor) -> Scores:
    splits, config = task.splits, task.config
    labels = [[item[i] for item in items] for items in (splits.query, splits.gallery) for i in (1, 2)]
    query_pids, query_cams, gallery_pids, gallery_cams = labels
    result = evaluate(
        query, gallery, query_pids, gallery_pids, query_cams, gallery_cams,
        metric=config.metric, max_rank=config.max_rank, protocol=config.metric_protocol,
    )  # fmt: skip
    return _retrieval_scores(result)


def _logits(task: ClassificationTask, models: Sequence[nn.Module]) -> tuple[list[torch.Tensor], torch.Tensor]:
    loader = build_classification_test_loader(
        task.data, batch_size=task.config.eval_batch_size, workers=task.config.workers
    )
    return predict_logits(models, loader, amp=task.amp, channels_last=task.channels_last)


def per_item_scores(task: ReidTask | ClassificationTask, models: Sequence[nn.Module]) -> list[Scores]:
    """Each model's per-query (re-ID) or per-image (classification) scores on the test data."""
    if isinstance(task, ClassificationTask):
        logits, labels = _logits(task, models)
        return [{"top1": (model_logits.argmax(dim=1) == labels).double().numpy()} for model_logits in logits]
    query, gallery = task.features(models)
    return [_reid_evaluate(task, q, g) for q, g in zip(query, gallery, strict=True)]


def ensemble_scores(task: ReidTask | ClassificationTask, models: Sequence[nn.Module]) -> Scores:
    """The K models used together: re-ID ranks by their concatenated L2-normalised features
    (cosine distance on the concatenation = the mean of the K cosine distances); classification
    averages their softmax probabilities."""
    if isinstance(task, ClassificationTask):
        logits, labels = _logits(task, models)
        probabilities = torch.stack([part.softmax(dim=1) for part in logits]).mean(dim=0)
        return {"top1": (probabilities.argmax(dim=1) == labels).double().numpy()}
    query, gallery = task.features(models)

    def joined(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([nn.functional.normalize(part.float().cpu(), dim=1) for part in parts], dim=1)

    return _reid_evaluate(task, joined(query), joined(gallery))


@torch.no_grad()
def weight_average(task: ReidTask | ClassificationTask, models: Sequence[nn.Module]) -> nn.Module:
    """One model whose weights are the K models' mean ("model soup"), with its batch-norm
    statistics re-estimated on up to BN_IMAGES training images (unaugmented, in list order):
    averaged running statistics do not describe the averaged weights' activations."""
    average = copy.deepcopy(models[0])
    states = [model.state_dict() for model in models]
    for key, tensor in average.state_dict().items():
        if tensor.is_floating_point():
            tensor.copy_(torch.stack([state[key].to(tensor.device) for state in states]).mean(dim=0))
    norms = [m for m in average.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return average.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch seen
    average.train()
    device = model_device(average)
    for images in _training_images(task):
        average(images.to(device))
    return average.eval()


def _training_images(task: ReidTask | ClassificationTask):
    config = task.config
    if isinstance(task, ClassificationTask):
        data: ClassificationData = task.data
        count = min(BN_IMAGES, len(data.train_labels))
        as_test = ClassificationData(
            data.name, data.train_images[:0], data.train_labels[:0],
            data.train_images[:count], data.train_labels[:count], data.num_classes,
        )  # fmt: skip
        loader = build_classification_test_loader(
            as_test, batch_size=config.batch_size, workers=config.workers
        )
    else:
        items = task.splits.train[:BN_IMAGES]
        loader = build_test_loader(
            items,
            height=config.height,
            width=config.width,
            batch_size=config.batch_size,
            workers=config.workers,
        )
    for images, *_ in loader:
        if len(images) > 1:  # batch-norm in train mode needs two or more
            yield images


def bootstrap_difference(
    ours: np.ndarray, theirs: np.ndarray, *, rounds: int = 2000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """The mean paired difference of two (seeds x items) score arrays, and its 95% bootstrap
    interval: each round resamples the seeds and, independently, the items (queries or test
    images), both with replacement, and averages ours - theirs over the resampled pairs."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape or ours.ndim != 2:
        raise ValueError(
            f"paired scores must have the same (seeds, items) shape, got {ours.shape} and {theirs.shape}"
        )
    difference = ours - theirs
    rng = np.random.default_rng(seed)
    seeds, items = difference.shape
    estimates = np.empty(rounds)
    for r in range(rounds):
        rows = rng.integers(0, seeds, size=seeds)
        columns = rng.integers(0, items, size=items)
        estimates[r] = difference[np.ix_(rows, columns)].mean()
    low, high = np.percentile(estimates, [2.5, 97.5])
    return float(difference.mean()), (float(low), float(high))


def save_scores(path: Path, key: str, scores: Sequence[Scores]) -> None:
    """Keep the per-item scores of one or more models at `path` under `key`: what they were
    computed from, so that a later comparison reuses them only then."""
    arrays = {
        f"{position}/{metric}": np.asarray(values, dtype=np.float64)
        for position, model_scores in enumerate(scores)
        for metric, values in model_scores.items()
    }
    write_keyed_arrays(path, f"scores {SCORES_FORMAT}\0{key}", arrays)


def load_scores(path: Path, key: str) -> list[Scores] | None:
    """The scores `save_scores` kept at `path`, or None when there are none to use: no file, one
    written under another key or format, or a damaged one (the models are then scored again)."""
    arrays = read_keyed_arrays(path, f"scores {SCORES_FORMAT}\0{key}")
    if not arrays:
        return None
    scores: dict[int, Scores] = {}
    for name, values in arrays.items():
        position, _, metric = name.partition("/")
        if not position.isdigit() or not metric:
            return None
        scores.setdefault(int(position), {})[metric] = values
    if sorted(scores) != list(range(len(scores))):
        return None
    return [scores[position] for position in range(len(scores))]
