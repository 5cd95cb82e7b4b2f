"""What a task gives the trainer: its data loaders, number of classes, teacher logits and
evaluation. Re-ID evaluates retrieval (mAP, CMC); classification evaluates top-1/top-5. The
trainer, the ring, checkpoints and metrics files are the same for both.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..data import CLASSIFICATION, ReidSplits, build_test_loader, build_train_loaders, dataset_spec
from ..data.classification import (
    ClassificationData,
    build_classification_loaders,
    build_classification_test_loader,
)
from ..data.image_cache import CachePlan, plan_image_cache
from ..data.validation import hold_out_identities, hold_out_images
from ..evaluation import CollapsedEmbeddingWarning, evaluate, topk_accuracy
from ..models import backbone_spec
from ..models.reid_head import BNNeckClassifier
from .features import extract_features, predict_logits
from .losses import batch_hard_triplet

REID_METRICS = ("mAP", "mINP", "rank1", "rank5", "rank10")
CLASSIFICATION_METRICS = ("top1", "top5")
# metric -> one value per query (re-ID) or test image (classification); their means are the
# task's metrics, and the same items line up across models and seeds, so differences pair.
Scores = dict[str, np.ndarray]


def order_of(config: TrainConfig, k: int) -> int:
    """Whose data order and augmentation model k reads: its own, or model 0's (same_data_order)."""
    return 0 if config.same_data_order else k


class Task:
    """What both tasks share: the precision and memory format their models run in, and the
    validation data held out of training (a task of the same kind, or None)."""

    amp = "none"
    channels_last = False
    validation: Task | None = None

    def runs_on(self, amp: str, channels_last: bool) -> None:
        """Run feature extraction and prediction under `amp` autocast in this memory format."""
        self.amp, self.channels_last = amp, channels_last
        if self.validation is not None:
            self.validation.runs_on(amp, channels_last)

    def data_fingerprint(self) -> dict[str, Any] | None:
        """What the run records about its data (`ReidSplits.fingerprint`); None: nothing yet."""
        return None

    def image_cache(self) -> dict[str, Any] | None:
        """Whether decoded images are kept between epochs, for metrics.json; None: not planned."""
        return None


class ReidTask(Task):
    kind = "reid"
    metric_keys = REID_METRICS
    primary = "mAP"

    def __init__(self, config: TrainConfig, splits: ReidSplits, images: CachePlan | None = None):
        self.config, self.splits = config, splits
        # decoded images kept between epochs and models (shared with the validation task)
        self.images = images or plan_reid_images(config, splits)
        self.num_classes = splits.num_train_pids
        # images are normalised as the backbone expects, in training, evaluation and the extractor
        spec = backbone_spec(config.arch)
        self.normalisation = {"mean": spec.mean, "std": spec.std}
        self.collapse_reported = False
        self._fingerprint: dict[str, Any] | None = None

    def data_fingerprint(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = self.splits.fingerprint()
        return self._fingerprint

    def image_cache(self) -> dict[str, Any]:
        return self.images.record()

    def train_loaders(self, model_ids: list[int], pin_memory: bool = False) -> list[DataLoader]:
        """A loader per model; model k's order and augmentation come from seed + k alone."""
        config = self.config
        loaders = [
            build_train_loaders(
                self.splits.train, count=1, seed=config.seed + order_of(config, k), height=config.height,
                width=config.width, augment=config.transforms, batch_size=config.batch_size,
                workers=config.workers, pin_memory=pin_memory, sampler=config.sampler,
                num_instances=config.num_instances, cache=self.images.cache, **self.normalisation,
            )[0]
            for k in model_ids
        ]  # fmt: skip
        short = getattr(loaders[0].sampler, "short_identities", 0)
        if short:  # said once per run, not once per model
            print(
                f"note: {short} of {self.num_classes} training identities have fewer than "
                f"{config.num_instances} images; their batches repeat images (drawn with replacement)",
                file=sys.stderr,
            )
        return loaders

    def uses_features(self) -> bool:
        """Whether training needs the pre-neck feature beside the logits (metric losses)."""
        return "triplet" in self.config.loss or self.config.center_loss_weight > 0

    def loss(
        self, logits: torch.Tensor, features: torch.Tensor | None, labels: torch.Tensor, criterion: nn.Module
    ) -> torch.Tensor:
        """The configured sum: label-smoothed softmax and/or batch-hard triplet (weighted); the
        center loss is the trainer's, since its centers have their own optimizer."""
        config = self.config
        total = logits.new_zeros((), dtype=torch.float32)
        if "softmax" in config.loss:
            total = total + criterion(logits, labels)
        if "triplet" in config.loss:
            total = total + config.triplet_weight * batch_hard_triplet(
                features, labels, config.triplet_margin
            )
        return total

    @staticmethod
    def teacher_logits(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """A torchreid model in eval mode returns features; its classifier maps them to logits
        (with a BNNeck the eval feature has been through the neck already)."""
        head = teacher.classifier
        return (head.linear if isinstance(head, BNNeckClassifier) else head)(teacher(images))

    def evaluate(self, models: list[nn.Module]) -> list[dict[str, Any]]:
        """mAP, mINP and rank-1/5/10 of every model on the query and gallery sets."""
        return self.score(*self.features(models))

    def features(self, models: list[nn.Module]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every model's query and gallery features (each batch read once for all models)."""
        config, query, gallery = self.config, self.splits.query, self.splits.gallery
        shape = dict(
            height=config.height, width=config.width, batch_size=config.eval_batch_size,
            workers=config.workers, amp=self.amp, channels_last=self.channels_last, cache=self.images.cache,
            **self.normalisation,
        )  # fmt: skip
        query_features = extract_features(models, query, what="features query", **shape)
        gallery_features = extract_features(models, gallery, what="features gallery", **shape)
        return query_features, gallery_features

    def item_scores(self, models: list[nn.Module]) -> list[Scores]:
        """Each model's per-query scores on the test data: each valid query's AP (`mAP`) and its
        rank-1 hits as the protocol counts them (`rank1`; under cuhk03 its share of rank-1 hits
        among its single-gallery-shot draws), so both average to the run's own metrics."""
        query, gallery = self.features(models)
        return [self._query_scores(q, g) for q, g in zip(query, gallery, strict=True)]

    def ensemble_scores(self, models: list[nn.Module]) -> Scores:
        """The K models used together: ranked by their concatenated L2-normalised features
        (cosine distance on the concatenation = the mean of the K cosine distances)."""
        query, gallery = self.features(models)

        def joined(parts: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat([nn.functional.normalize(part.float().cpu(), dim=1) for part in parts], dim=1)

        return self._query_scores(joined(query), joined(gallery))

    def bn_images(self, limit: int):
        """Batches of up to `limit` training images, unaugmented, in list order (to re-estimate
        batch-norm statistics); batches of one image are left out (train-mode BN needs two)."""
        config = self.config
        loader = build_test_loader(
            self.splits.train[:limit], height=config.height, width=config.width,
            batch_size=config.batch_size, workers=config.workers, cache=self.images.cache,
            **self.normalisation,
        )  # fmt: skip
        for images, *_ in loader:
            if len(images) > 1:
                yield images

    def _query_scores(self, query: torch.Tensor, gallery: torch.Tensor) -> Scores:
        labels = [
            [item[i] for item in items] for items in (self.splits.query, self.splits.gallery) for i in (1, 2)
        ]
        query_pids, query_cams, gallery_pids, gallery_cams = labels
        config = self.config
        result = evaluate(
            query, gallery, query_pids, gallery_pids, query_cams, gallery_cams,
            metric=config.metric, max_rank=config.max_rank, protocol=config.metric_protocol,
        )  # fmt: skip
        return {"mAP": result.average_precisions, "rank1": result.rank1_hits}

    def score(
        self,
        query_features: list[torch.Tensor],
        gallery_features: list[torch.Tensor],
        *,
        model_ids: list[int] | None = None,
        rerank: bool = False,
    ) -> list[dict[str, Any]]:
        """One row of retrieval metrics per model from its features (model k unless `model_ids`)."""
        query, gallery = self.splits.query, self.splits.gallery
        query_pids, query_cams, gallery_pids, gallery_cams = (
            [item[i] for item in items] for items in (query, gallery) for i in (1, 2)
        )
        rows = []
        ids = model_ids if model_ids is not None else range(len(query_features))
        for k, query, gallery in zip(ids, query_features, gallery_features, strict=True):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CollapsedEmbeddingWarning)
                result = evaluate(
                    query, gallery, query_pids, gallery_pids, query_cams, gallery_cams,
                    metric=self.config.metric, max_rank=self.config.max_rank, rerank=rerank,
                    protocol=self.config.metric_protocol,
                )  # fmt: skip
            collapsed = [w for w in caught if issubclass(w.category, CollapsedEmbeddingWarning)]
            for other in (w for w in caught if w not in collapsed):
                warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
            if collapsed and not self.collapse_reported:  # once per run: it recurs every epoch
                print(f"warning: model {k}: {collapsed[0].message}", file=sys.stderr)
                self.collapse_reported = True
            rows.append({"model": k, **{key: float(getattr(result, key)) for key in REID_METRICS}})
        return rows


class ClassificationTask(Task):
    kind = "classification"
    metric_keys = CLASSIFICATION_METRICS
    primary = "top1"

    def __init__(self, config: TrainConfig, data: ClassificationData):
        self.config, self.data = config, data
        self.num_classes = data.num_classes

    def train_loaders(self, model_ids: list[int], pin_memory: bool = False) -> list[DataLoader]:
        config = self.config
        return [
            build_classification_loaders(
                self.data, count=1, seed=config.seed + order_of(config, k), augment=config.transforms,
                batch_size=config.batch_size, workers=config.workers, pin_memory=pin_memory,
            )[0]
            for k in model_ids
        ]  # fmt: skip

    @staticmethod
    def teacher_logits(teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return teacher(images)

    def uses_features(self) -> bool:
        return False

    def loss(self, logits, features, labels, criterion: nn.Module) -> torch.Tensor:
        return criterion(logits, labels)

    def _logits(self, models: list[nn.Module]) -> tuple[list[torch.Tensor], torch.Tensor]:
        loader = build_classification_test_loader(
            self.data, batch_size=self.config.eval_batch_size, workers=self.config.workers
        )
        return predict_logits(models, loader, amp=self.amp, channels_last=self.channels_last)

    def item_scores(self, models: list[nn.Module]) -> list[Scores]:
        """Each model's per-image scores on the test set: whether its top-1 class is right."""
        logits, labels = self._logits(models)
        return [{"top1": (part.argmax(dim=1) == labels).double().numpy()} for part in logits]

    def ensemble_scores(self, models: list[nn.Module]) -> Scores:
        """The K models used together: their softmax probabilities averaged."""
        logits, labels = self._logits(models)
        probabilities = torch.stack([part.softmax(dim=1) for part in logits]).mean(dim=0)
        return {"top1": (probabilities.argmax(dim=1) == labels).double().numpy()}

    def bn_images(self, limit: int):
        """Batches of up to `limit` training images, unaugmented, in list order."""
        data = self.data
        count = min(limit, len(data.train_labels))
        as_test = ClassificationData(
            data.name, data.train_images[:0], data.train_labels[:0],
            data.train_images[:count], data.train_labels[:count], data.num_classes,
        )  # fmt: skip
        loader = build_classification_test_loader(
            as_test, batch_size=self.config.batch_size, workers=self.config.workers
        )
        for images, *_ in loader:
            if len(images) > 1:
                yield images

    def evaluate(self, models: list[nn.Module]) -> list[dict[str, Any]]:
        """Top-1 and top-5 accuracy (fractions) of every model on the test set."""
        logits, labels = self._logits(models)
        ks = (1, min(5, self.num_classes))
        results = []
        for k, model_logits in enumerate(logits):
            accuracy = topk_accuracy(model_logits, labels, ks=ks)
            results.append({"model": k, "top1": accuracy["top1"], "top5": accuracy[f"top{ks[1]}"]})
        return results


def plan_reid_images(config: TrainConfig, splits: ReidSplits) -> CachePlan:
    """Whether the run keeps its images decoded (`data/image_cache.py`), over every image it reads."""
    paths = [item[0] for part in (splits.train, splits.query, splits.gallery) for item in part]
    return plan_image_cache(
        config.image_cache, paths, height=config.height, width=config.width, workers=config.workers
    )


def make_task(config: TrainConfig, data: ReidSplits | ClassificationData) -> ReidTask | ClassificationTask:
    """The task of the config's dataset (the registry says which), over its loaded data; with
    `config.val_ids`, training data without the held-out part, which `task.validation` scores."""
    classification = dataset_spec(config.dataset).task == CLASSIFICATION
    kind = ClassificationTask if classification else ReidTask
    if not config.val_ids:
        return kind(config, data)
    hold_out = hold_out_images if classification else hold_out_identities
    train, held = hold_out(data, config.val_ids)
    if classification:
        task, task.validation = kind(config, train), kind(config, held)
    else:  # one image cache for both, planned over the data as loaded
        images = plan_reid_images(config, data)
        task, task.validation = kind(config, train, images), kind(config, held, images)
    if not classification:
        task._fingerprint = data.fingerprint()  # the data as loaded, before the hold-out
    return task
