"""The re-ID model as the strong baseline shapes it: a torchreid backbone with an optional BNNeck
and an optional last stride of 1, built the same way for training and for every later use.

torchreid's backbones pool a feature `v`, return it in eval mode and return `classifier(v)` in
train mode (and `(classifier(v), v)` when built for the triplet loss). The BNNeck (Luo et al.,
2019) puts a BatchNorm1d without a bias shift between `v` and a bias-free classifier: the metric
losses see `v`, the classifier and retrieval see `neck(v)`. It lives inside `model.classifier`,
so a state_dict keeps every backbone key and the grafting rule reaches the neck like any other
layer (it takes the last convolution's alpha, docs/method.md section 3). The eval-mode switch to
`neck(v)` is a forward hook: a model rebuilt from its config with `build_reid_model` behaves as
the trained one did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .registry import backbone_spec, build_backbone
from .shapes import last_stage


class BNNeckClassifier(nn.Module):
    """neck (BatchNorm1d, bias frozen at 0) then a bias-free linear classifier."""

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.neck = nn.BatchNorm1d(feature_dim)
        self.neck.bias.requires_grad_(False)  # no shift: the feature stays centred for retrieval
        self.linear = nn.Linear(feature_dim, num_classes, bias=False)
        nn.init.normal_(self.linear.weight, std=0.001)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.neck(features))


def _neck_in_eval(model: nn.Module, inputs, output):
    """Forward hook: in eval mode the model's output (the pooled feature) goes through the neck."""
    if model.training:
        return output
    return model.classifier.neck(output)


def add_bnneck(model: nn.Module) -> nn.Module:
    """Replace `model.classifier` (a Linear) by a BNNeckClassifier of the same shape."""
    old = model.classifier
    if not isinstance(old, nn.Linear):
        raise ValueError(f"--bnneck needs a backbone whose classifier is one linear layer, not {type(old)}")
    model.classifier = BNNeckClassifier(old.in_features, old.out_features).to(old.weight.device)
    model.register_forward_hook(_neck_in_eval)
    return model


def set_last_stride_one(model: nn.Module, arch: str) -> nn.Module:
    """Make the last stage keep its input's resolution (doubles the final map's sides)."""
    backbone_spec(arch).check_last_stride(1)
    block = last_stage(model)
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (1, 1)
    return model


def build_reid_model(
    arch: str,
    num_classes: int,
    *,
    seed: int | None = None,
    bnneck: bool = False,
    last_stride: int = 2,
    with_features: bool = False,
) -> nn.Module:
    """A torchreid backbone with the requested neck and last stride. `with_features`: train mode
    returns (logits, pre-neck feature) for the triplet and center losses; eval mode is the same
    either way (the retrieval feature)."""
    options = {"loss": "triplet"} if with_features else {}
    model = build_backbone(arch, num_classes, seed=seed, **options)
    if last_stride == 1:
        set_last_stride_one(model, arch)
    if bnneck:
        # the neck's own initialisation draws nothing random but the classifier's normal init
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            add_bnneck(model)
    return model


def head_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `build_reid_model` options a saved run's config asks for (runs from before these
    options existed used neither)."""
    return {"bnneck": bool(config.get("bnneck", False)), "last_stride": int(config.get("last_stride", 2))}
