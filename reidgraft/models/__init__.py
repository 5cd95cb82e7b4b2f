"""Backbones by name, in one registry (`registry.py`): torchreid's re-ID models and the papers'
CIFAR classifiers (`cifar.py`), each spec holding what reidgraft knows about it; their ImageNet
weights (`imagenet.py`, `pretrained.py`) and the re-ID head (`reid_head.py`)."""

from .cifar import CIFAR_MODELS
from .imagenet import IMAGENET, SCRATCH, InitialWeights, WeightsError
from .pretrained import DEEP_SORT_MOBILENETV2, load_pretrained
from .registry import (
    CLASSIFICATION,
    REID,
    BackboneSpec,
    ReidBackbone,
    backbone_names,
    backbone_spec,
    build_backbone,
    imagenet_archs,
    resolve_weights,
    torchreid_names,
)

__all__ = [
    "CIFAR_MODELS",
    "CLASSIFICATION",
    "DEEP_SORT_MOBILENETV2",
    "IMAGENET",
    "REID",
    "SCRATCH",
    "BackboneSpec",
    "InitialWeights",
    "ReidBackbone",
    "WeightsError",
    "backbone_names",
    "backbone_spec",
    "build_backbone",
    "imagenet_archs",
    "load_pretrained",
    "resolve_weights",
    "torchreid_names",
]
