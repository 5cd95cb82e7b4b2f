"""What K models compute on test data: re-ID features for a list of images, classification logits
over a test loader; and a run's models rebuilt from its checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data import build_test_loader
from ..models import build_backbone


@torch.no_grad()
def extract_features(
    models: Sequence[nn.Module],
    items,
    *,
    height: int,
    width: int,
    batch_size: int,
    workers: int,
    device: torch.device,
    what: str = "features",
) -> list[torch.Tensor]:
    """Each model's features (eval mode) for `items`; every batch is read once for all models."""
    loader = build_test_loader(items, height=height, width=width, batch_size=batch_size, workers=workers)
    for model in models:
        model.eval()
    parts: list[list[torch.Tensor]] = [[] for _ in models]
    for images, _, _, _ in tqdm(loader, desc=what, leave=False, disable=None):
        images = images.to(device, non_blocking=True)
        for k, model in enumerate(models):
            parts[k].append(model(images).float().cpu())
    return [torch.cat(chunks) for chunks in parts]


@torch.no_grad()
def predict_logits(
    models: Sequence[nn.Module], loader: DataLoader, device: torch.device
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each model's logits (eval mode) over a test loader, and the labels."""
    for model in models:
        model.eval()
    parts: list[list[torch.Tensor]] = [[] for _ in models]
    labels = []
    for images, targets, _ in loader:
        images = images.to(device, non_blocking=True)
        for k, model in enumerate(models):
            parts[k].append(model(images).float().cpu())
        labels.append(targets)
    return [torch.cat(chunks) for chunks in parts], torch.cat(labels)


def models_from_checkpoint(payload: dict[str, Any], device: torch.device) -> list[nn.Module]:
    """The K models of a reidgraft checkpoint, in eval mode on `device`."""
    arch, classes = payload["config"]["arch"], payload["num_classes"]
    models = []
    for state in payload["models"]:
        model = build_backbone(arch, classes)
        model.load_state_dict(state)
        models.append(model.to(device).eval())
    return models
