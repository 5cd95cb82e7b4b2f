"""What K models compute on test data: re-ID features for a list of images, classification logits
over a test loader. (A run's models are rebuilt by `trained.TrainedRun`.)"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import build_test_loader
from ..device import autocast
from ..progress import progress


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Inputs:
    """One batch of images on each device that asks for it, in the models' memory format."""

    def __init__(self, images: torch.Tensor, channels_last: bool):
        self.images, self.channels_last, self.on = images, channels_last, {}

    def __getitem__(self, device: torch.device) -> torch.Tensor:
        if device not in self.on:
            images = self.images.to(device, non_blocking=True)
            self.on[device] = (
                images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
            )
        return self.on[device]


@torch.no_grad()
def extract_features(
    models: Sequence[nn.Module],
    items,
    *,
    height: int,
    width: int,
    batch_size: int,
    workers: int,
    amp: str = "none",
    channels_last: bool = False,
    what: str = "features",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    cache=None,
) -> list[torch.Tensor]:
    """Each model's float32 features (eval mode, under `amp` autocast) for `items` (normalised by
    the backbone's `mean` and `std`), every batch read once for all models, decoded images from
    `cache` (a `DecodedImages`) where given. The features stay on each model's device: on CUDA
    the evaluator's distance GEMMs run there too."""
    devices = [model_device(model) for model in models]
    pin_memory = any(device.type == "cuda" for device in devices)
    loader = build_test_loader(
        items, height=height, width=width, batch_size=batch_size, workers=workers, pin_memory=pin_memory,
        mean=mean, std=std, cache=cache,
    )  # fmt: skip
    for model in models:
        model.eval()
    parts: list[list[torch.Tensor]] = [[] for _ in models]
    for images, _, _, _ in progress(loader, total=len(loader), what=what, per_step=batch_size):
        inputs = Inputs(images, channels_last)
        for k, (model, device) in enumerate(zip(models, devices, strict=True)):
            with autocast(device, amp):
                parts[k].append(model(inputs[device]).float())
    features = [torch.cat(chunks) for chunks in parts]
    if amp == "bf16":  # (oneDNN's CPU bf16 kernels fail at some sizes: see bf16_hazard)
        for k, values in enumerate(features):
            if devices[k].type == "cpu" and not bool(torch.isfinite(values).all()):
                raise ValueError(
                    f"model {k}'s features hold NaN or infinite values under bf16 autocast ({what}); "
                    "bf16 is the likely cause: run with --amp none"
                )
    return features


@torch.no_grad()
def predict_logits(
    models: Sequence[nn.Module], loader: DataLoader, *, amp: str = "none", channels_last: bool = False
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each model's float32 logits (eval mode, under `amp` autocast) over a test loader, on the
    CPU, and the labels."""
    devices = [model_device(model) for model in models]
    for model in models:
        model.eval()
    parts: list[list[torch.Tensor]] = [[] for _ in models]
    labels = []
    for images, targets, _ in loader:
        inputs = Inputs(images, channels_last)
        for k, (model, device) in enumerate(zip(models, devices, strict=True)):
            with autocast(device, amp):
                parts[k].append(model(inputs[device]).float().cpu())
        labels.append(targets)
    return [torch.cat(chunks) for chunks in parts], torch.cat(labels)
