"""What a backbone does to an input size, found by running it on shapes alone (the meta device:
no memory, no arithmetic): the smallest input it takes, and the layers that meet a feature map
one pixel wide."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

PROBE_SIDE = 512  # large enough that every backbone's final map is many pixels on each side


@dataclass(frozen=True)
class ShapeProbe:
    stride: tuple[int, int]  # total downsampling (height, width) before global pooling
    narrow_strided_convs: tuple[str, ...]  # strided k>1 convolutions whose input is 1 pixel wide

    @property
    def min_size(self) -> tuple[int, int]:
        """Half the total stride: one halving less and two downsampling stages would receive
        a map of one pixel, so that every later stage sees padding around a single pixel."""
        return (max(1, self.stride[0] // 2), max(1, self.stride[1] // 2))


@functools.cache
def probe(arch: str, size: tuple[int, int]) -> ShapeProbe:
    """Run `arch` on a (height, width) = `size` input on the meta device and record its shapes."""
    from reidgraft.models import build_backbone

    with torch.device("meta"):
        model = build_backbone(arch, num_classes=2).eval()
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    widths: dict[str, int] = {}
    last_map: list[tuple[int, int]] = []

    def record(name):
        def hook(module, inputs, output):
            widths[name] = inputs[0].shape[-1]
            last_map[:] = [tuple(output.shape[-2:])]

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in convs]
    try:
        with torch.no_grad():
            model(torch.empty(1, 3, *size, device="meta"))
        narrow = tuple(
            name
            for name, m in convs
            if widths.get(name) == 1 and max(m.stride) > 1 and max(m.kernel_size) > 1
        )
        if size == (PROBE_SIDE, PROBE_SIDE):
            stride = (PROBE_SIDE // last_map[0][0], PROBE_SIDE // last_map[0][1])
        else:
            stride = probe(arch, (PROBE_SIDE, PROBE_SIDE)).stride
    finally:
        for handle in handles:
            handle.remove()
    return ShapeProbe(stride, narrow)


def check_input_size(arch: str, height: int, width: int) -> None:
    """ValueError (one line) when `arch` cannot take a `height` x `width` input."""
    min_height, min_width = probe(arch, (PROBE_SIDE, PROBE_SIDE)).min_size
    for name, side, smallest in (("height", height, min_height), ("width", width, min_width)):
        if side < smallest:
            raise ValueError(
                f"{name} {side} is too small for {arch}: it downsamples by "
                f"{2 * smallest}, so below {smallest} pixels its last two stages get maps one pixel across; "
                f"use --{name} {smallest} or more (re-ID recipes use 256x128)"
            )


def bf16_training_hazard(arch: str, height: int, width: int) -> str | None:
    """The first layer where CPU bf16 training would go wrong at this input size, or None.

    oneDNN's bf16 weight gradient of a strided convolution (kernel > 1) reads memory it never
    wrote when the input is one pixel wide (torch 2.14 on AVX512-BF16/AMX: NaN weights, at
    random; fp32 and wider inputs are exact). Found by poisoning the heap with NaN before a step.
    """
    narrow = probe(arch, (height, width)).narrow_strided_convs
    return narrow[0] if narrow else None
