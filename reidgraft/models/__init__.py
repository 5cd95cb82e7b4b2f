"""Backbones by name: torchreid's re-ID models (imported from `torchreid.reid`)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from reidgraft.models.pretrained import DEEP_SORT_MOBILENETV2 as DEEP_SORT_MOBILENETV2
from reidgraft.models.pretrained import load_pretrained as load_pretrained


def _torchreid_models():
    # torchreid warns at import that its Cython ranking is absent; reidgraft does not use it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        from torchreid.reid import models
    return models


def backbone_names() -> list[str]:
    """Every backbone torchreid can build (0.2.5 keeps them in a private dict, no public list)."""
    return list(vars(_torchreid_models())["__model_factory"])


def build_backbone(name: str, num_classes: int, *, seed: int | None = None, **kwargs) -> nn.Module:
    """A torchreid backbone with `num_classes` outputs, randomly initialised (never downloads).

    `seed` makes the initialisation reproducible without touching the global RNG's later use.
    """
    names = backbone_names()
    if name not in names:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(names)}")
    kwargs.setdefault("pretrained", False)
    if kwargs["pretrained"]:
        raise ValueError("pretrained weights come from a local file, not torchreid's download")
    if seed is None:
        return _torchreid_models().build_model(name, num_classes=num_classes, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _torchreid_models().build_model(name, num_classes=num_classes, **kwargs)
