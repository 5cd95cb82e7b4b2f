"""Starting runs from a config: names checked before any data is touched, the task's data
loaded, and a run carried to its last epoch (reusing or resuming what a folder already holds).
Shared by tools/train.py and tools/compare.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError, TrainConfig
from ..data import (
    CLASSIFICATION_DATASETS,
    DATASETS,
    ClassificationData,
    ReidSplits,
    load_classification_dataset,
    load_reid_dataset,
)
from ..models import CIFAR_MODELS, backbone_names, torchreid_names
from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .trainer import Trainer


def check_names(config: TrainConfig) -> None:
    """Dataset and backbone names, and that they belong to the same task, before any data is read."""
    datasets = (*DATASETS, *CLASSIFICATION_DATASETS)
    if config.dataset not in datasets:
        raise ConfigError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(datasets)}")
    if config.arch not in backbone_names():
        raise ConfigError(f"unknown arch {config.arch!r}; choose one of: {', '.join(backbone_names())}")
    if config.dataset in CLASSIFICATION_DATASETS and config.arch not in CIFAR_MODELS:
        raise ConfigError(
            f"arch {config.arch!r} is a re-ID backbone; {config.dataset} trains one of: "
            f"{', '.join(CIFAR_MODELS)}"
        )
    if config.dataset in DATASETS and config.arch in CIFAR_MODELS:
        raise ConfigError(
            f"arch {config.arch!r} is a CIFAR classifier; re-ID datasets train torchreid backbones "
            f"({', '.join(torchreid_names()[:6])}, ...)"
        )


def load_data(config: TrainConfig, log: Callable[[str], None] = print) -> ReidSplits | ClassificationData:
    if config.dataset in CLASSIFICATION_DATASETS:
        data = load_classification_dataset(config.dataset, config.root, download=config.download)
        log(
            f"{config.dataset}: {len(data.train_images)} train and {len(data.test_images)} test images, "
            f"{data.num_classes} classes"
        )
        return data
    splits = load_reid_dataset(config.dataset, config.root)
    log(
        f"{config.dataset}: {len(splits.train)} train images of {splits.num_train_pids} identities, "
        f"{len(splits.query)} query, {len(splits.gallery)} gallery"
    )
    return splits


def finish_run(
    config: TrainConfig, data: ReidSplits | ClassificationData, log: Callable[[str], None] = print
) -> tuple[dict[str, Any], str]:
    """Carry the run in `config.output` to `config.epochs`: reuse it if it has finished, resume it
    from its checkpoint if it was interrupted, else train it. Returns (metrics.json, what was done)."""
    run_dir = Path(config.output)
    checkpoint = run_dir / CHECKPOINT_NAME
    metrics_file = run_dir / "metrics.json"
    payload = load_checkpoint(checkpoint) if checkpoint.is_file() else None
    if payload is not None:
        saved = {key: payload["config"].get(key) for key in ("dataset", "arch", "models", "graft", "seed")}
        wanted = {key: getattr(config, key) for key in saved}
        if saved != wanted:
            raise ConfigError(f"{run_dir} holds another run ({saved}); expected {wanted}")
        if payload["epoch"] == config.epochs and metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            if metrics.get("final"):
                return metrics, "reused"
    trainer = Trainer(config, data, run_dir, log=log)
    done = "trained"
    if payload is not None:
        trainer.load_state(payload)
        done = f"resumed after epoch {trainer.epoch}"
    trainer.fit()
    return trainer.metrics_file(), done
