"""Backbones by name: torchreid's re-ID models (imported from `torchreid.reid`) and the papers'
CIFAR classifiers (`cifar.py`), in one registry."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from reidgraft.models.cifar import CIFAR_MODELS
from reidgraft.models.pretrained import DEEP_SORT_MOBILENETV2 as DEEP_SORT_MOBILENETV2
from reidgraft.models.pretrained import load_pretrained as load_pretrained


def _torchreid_models():
    # torchreid warns at import that its Cython ranking is absent; reidgraft does not use it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        from torchreid.reid import models
    return models


def torchreid_names() -> list[str]:
    """Every backbone torchreid can build (0.2.5 keeps them in a private dict, no public list)."""
    return list(vars(_torchreid_models())["__model_factory"])


def backbone_names() -> list[str]:
    """Every name `build_backbone` takes: torchreid's backbones, then the CIFAR classifiers."""
    return torchreid_names() + list(CIFAR_MODELS)


def build_backbone(name: str, num_classes: int, *, seed: int | None = None, **kwargs) -> nn.Module:
    """A backbone with `num_classes` outputs, randomly initialised (never downloads).

    torchreid's return logits in train mode and features in eval mode (`.classifier` maps them to
    logits); the CIFAR ones always return logits. `seed` makes the initialisation reproducible
    without touching the global RNG's later use.
    """
    if name not in CIFAR_MODELS and name not in torchreid_names():
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(backbone_names())}")
    if name in CIFAR_MODELS:
        if kwargs:
            raise ValueError(f"{name} takes no options, got {', '.join(kwargs)}")
        build = lambda: CIFAR_MODELS[name](num_classes)  # noqa: E731
    else:
        kwargs.setdefault("pretrained", False)
        if kwargs["pretrained"]:
            raise ValueError("pretrained weights come from a local file, not torchreid's download")
        build = lambda: _torchreid_models().build_model(name, num_classes=num_classes, **kwargs)  # noqa: E731
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
