"""What a network does to an input size, found by running it on shapes alone (the meta device:
no memory, no arithmetic): its final map, and the strided convolutions that make a map one pixel
wide or tall; and where its ResNet-style last stage is. Per backbone name, `registry.py` asks these."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

PROBE_SIDE = 512  # large enough that every backbone's final map is many pixels on each side


@dataclass(frozen=True)
class ShapeProbe:
    stride: tuple[int, int]  # total downsampling (height, width) before global pooling
    narrow_strided_convs: tuple[str, ...]  # strided k>1 convolutions whose output is 1 pixel on a side

    @property
    def min_size(self) -> tuple[int, int]:
        """Half the total stride: one halving less and two downsampling stages would receive
        a map of one pixel, so that every later stage sees padding around a single pixel."""
        return (max(1, self.stride[0] // 2), max(1, self.stride[1] // 2))


def run_on_shapes(model: nn.Module, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[str, ...]]:
    """Run a model built on the meta device on a (height, width) input: the last convolution's
    output map, and the strided k>1 convolutions whose output is one pixel wide or tall."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    outputs: dict[str, tuple[int, int]] = {}
    last_map: list[tuple[int, int]] = []

    def record(name):
        def hook(module, inputs, output):
            outputs[name] = tuple(output.shape[-2:])
            last_map[:] = [outputs[name]]

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in convs]
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, 3, *size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    narrow = tuple(
        name
        for name, m in convs
        if name in outputs and min(outputs[name]) == 1 and max(m.stride) > 1 and max(m.kernel_size) > 1
    )
    return last_map[0], narrow


def last_stage(model: nn.Module) -> nn.Module | None:
    """The first block of a ResNet-style last stage (`layer4[0]`), whose stride halves the map."""
    stage = getattr(model, "layer4", None)
    return stage[0] if isinstance(stage, nn.Sequential) and len(stage) else None
