"""Backbones by name, in one registry (`registry.py`): torchreid's re-ID models and the papers'
CIFAR classifiers (`cifar.py`), each spec holding what reidgraft knows about it; their ImageNet
weights (`imagenet.py`, `pretrained.py`) and the re-ID head (`reid_head.py`)."""

from __future__ import annotations

from ..lazy import lazy_names

# public name -> the module of this package that defines it, loaded on first use (PEP 562): the
# config reads `IMAGENET` without loading torch, torchvision and torchreid behind the registry
_EXPORTS = {
    "CIFAR_MODELS": "cifar",
    "IMAGENET": "imagenet",
    "SCRATCH": "imagenet",
    "InitialWeights": "imagenet",
    "WeightsError": "imagenet",
    "DEEP_SORT_MOBILENETV2": "pretrained",
    "load_pretrained": "pretrained",
    "CLASSIFICATION": "registry",
    "REID": "registry",
    "BackboneSpec": "registry",
    "ReidBackbone": "registry",
    "backbone_names": "registry",
    "backbone_spec": "registry",
    "build_backbone": "registry",
    "imagenet_archs": "registry",
    "resolve_weights": "registry",
    "torchreid_names": "registry",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
