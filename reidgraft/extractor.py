"""A trained run as a function from images to features, for trackers, retrieval services and
camera pipelines: `FeatureExtractor(run_dir)(images)`.

It preprocesses exactly as evaluation does (torchreid's test transform: resize to the run's
size, ImageNet mean and std), runs the model in the run's precision, and returns L2-normalised
float32 features (`metric` "cosine": nearest neighbours by cosine or by euclidean distance
agree). With `normalize=False` it returns evaluation's raw features, to be ranked by the run's
own metric (`evaluation_metric`): a run evaluated with euclidean distance ranks raw features,
which differs from cosine when feature norms differ.

`resize="cv2"` resizes as OpenCV's `cv2.resize(..., INTER_LINEAR)` does (no antialiasing), which
is what boxmot's re-ID backends feed a model: the features such a tracker gets from an export,
for checking it. Evaluation's PIL resize (the default) is the one the model was measured with.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .data.loaders import read_rgb, reid_transforms
from .device import autocast, resolve_device
from .engine.trained import TrainedRun, WeightsFile, weights_contract
from .models import backbone_spec

RESIZES = ("pil", "cv2")


class FeatureExtractor:
    """Model k of a reidgraft re-ID run (default: the run's chosen model), ready to embed images.
    A plain weights file works too, as torchreid's extractor takes one: an `export --format
    weights` file (its FILE.json says the rest), or a torchreid model file with `arch`, `height`
    and `width`.

    Call it on a path, a PIL image, an HWC uint8 array (RGB, or BGR with `bgr=True` for OpenCV
    frames), a list of those, or an NCHW float tensor already preprocessed as the exported
    models expect (the run's size, normalised with `mean` and `std`). It returns an (N, dim)
    float32 array of L2-normalised features (raw ones with `normalize=False`); an empty list
    gives (0, dim)."""

    def __init__(
        self,
        run_dir: str | Path | TrainedRun,
        model: int | None = None,
        device: str = "auto",
        amp: str = "auto",
        batch_size: int = 64,
        normalize: bool = True,
        resize: str = "pil",
        arch: str | None = None,
        height: int | None = None,
        width: int | None = None,
    ):
        run = run_dir if isinstance(run_dir, TrainedRun) else _open(run_dir, arch, height, width)
        run.require_reid("FeatureExtractor embeds images with re-ID models")
        if model is None:
            model, self.chosen_because = run.recommended_model()
            if run.metrics is None and run.folder.metrics.exists():  # said, not silent
                warnings.warn(
                    f"FeatureExtractor: {self.chosen_because}; pass model=K to choose", stacklevel=2
                )
        else:
            self.chosen_because = "asked for"
        run.check_model(model)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}")
        self.resize = resize
        self.run, self.run_dir, self.k, self.config = run, run.given, model, run.raw_config
        self.arch, self.evaluation_metric = run.arch, run.raw_config["metric"]
        self.normalize = normalize
        self.metric = "cosine" if normalize else self.evaluation_metric  # how to compare the output
        self.height, self.width = run.input_size
        spec = backbone_spec(self.arch)
        self.mean, self.std = spec.mean, spec.std
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.amp, self.channels_last = run.precision(amp, self.device)
        self.model = run.model(model, self.device, self.channels_last)
        _, self.transform = reid_transforms(self.height, self.width, [], mean=self.mean, std=self.std)
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.height, self.width, device=self.device)
            self.dim = int(self.model(probe).shape[1])

    @property
    def digest(self) -> str:
        """A fingerprint of what makes these features: the model's weights, architecture, input
        size, resize and normalisation. Features with another digest do not compare with these
        (an identity memory or a gallery built from them refuses them)."""
        if getattr(self, "_digest", None) is None:
            from .files import state_fingerprint

            extra = (self.arch, self.height, self.width, self.resize, self.normalize)
            self._digest = state_fingerprint(self.model.state_dict(), extra)
        return self._digest

    def __repr__(self) -> str:
        return (
            f"FeatureExtractor({self.run_dir}, model {self.k} ({self.chosen_because}), {self.arch} "
            f"{self.height}x{self.width}, dim {self.dim}, {self.device}, amp {self.amp}"
            + (", resize cv2)" if self.resize == "cv2" else ")")
        )

    # ------------------------------------------------------------------ input

    def _as_rgb(self, image: Any, bgr: bool, index: int = 0) -> Image.Image:
        if isinstance(image, str | Path):
            return read_rgb(str(image))
        if isinstance(image, Image.Image):
            if 0 in image.size:
                raise ValueError(f"image {index} is empty ({image.width}x{image.height} pixels)")
            return image if image.mode == "RGB" else image.convert("RGB")
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8:
                raise ValueError(
                    f"image arrays must be uint8 (0-255), got {image.dtype}; scale and cast them"
                )
            if image.ndim in (2, 3) and 0 in image.shape[:2]:
                raise ValueError(
                    f"image {index} is empty (shape {image.shape}): a box outside the frame gives one; "
                    "clip boxes to the frame and leave out those with no pixels"
                )
            if image.ndim == 2:
                return Image.fromarray(image, "L").convert("RGB")
            if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
                raise ValueError(
                    "image arrays must be HxW or HxWxC with C 1, 3 or 4 (HWC, not CHW), got shape "
                    f"{image.shape}"
                )
            if image.shape[2] == 1:
                return Image.fromarray(image[:, :, 0], "L").convert("RGB")
            channels = image[:, :, :3]
            if bgr:
                channels = channels[:, :, ::-1]
            return Image.fromarray(np.ascontiguousarray(channels), "RGB")
        raise ValueError(
            f"cannot embed a {type(image).__name__}: give paths, PIL images, HWC uint8 arrays or an "
            "NCHW float tensor"
        )

    def preprocess(self, images: Sequence[Any], bgr: bool = False, first: int = 0) -> torch.Tensor:
        """The NCHW float tensor evaluation would feed the model for these images (numbered from
        `first` in error messages)."""
        pictures = [self._as_rgb(image, bgr, first + i) for i, image in enumerate(images)]
        if self.resize == "cv2":  # then the transform's own resize, to the same size, changes nothing
            import cv2

            size = (self.width, self.height)
            pictures = [
                Image.fromarray(cv2.resize(np.asarray(picture), size, interpolation=cv2.INTER_LINEAR))
                for picture in pictures
            ]
        return torch.stack([self.transform(picture) for picture in pictures])

    # ------------------------------------------------------------------ embedding

    @torch.no_grad()
    def _embed(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp):
            features = self.model(batch)
        features = features.float()
        return (torch.nn.functional.normalize(features, dim=1) if self.normalize else features).cpu()

    def __call__(self, images: Any, bgr: bool = False) -> np.ndarray:
        if isinstance(images, torch.Tensor):
            return self._embed_tensor(images)
        single = isinstance(images, str | Path | Image.Image)
        if single or (isinstance(images, np.ndarray) and images.ndim <= 3):
            images = [images]
        if not isinstance(images, Iterable):
            raise ValueError(f"cannot embed a {type(images).__name__}")
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), np.float32)
        chunks = [
            self._embed(self.preprocess(images[start : start + self.batch_size], bgr, start))
            for start in range(0, len(images), self.batch_size)
        ]
        return torch.cat(chunks).numpy()

    def _embed_tensor(self, images: torch.Tensor) -> np.ndarray:
        expected = (3, self.height, self.width)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected or not images.is_floating_point():
            raise ValueError(
                f"a tensor must be preprocessed NCHW float at the run's size, N x {expected}, got "
                f"{tuple(images.shape)} {images.dtype}; pass images (paths, PIL, arrays) to have them resized"
            )
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        finite = torch.isfinite(images).flatten(1).all(dim=1)
        if not bool(finite.all()):
            index = int((~finite).nonzero()[0])
            raise ValueError(
                f"image {index} of the tensor holds NaN or infinite values; its feature would be NaN"
            )
        size = self.batch_size
        chunks = [self._embed(images[s : s + size].float()) for s in range(0, len(images), size)]
        return torch.cat(chunks).numpy()


def _open(path: str | Path, arch: str | None, height: int | None, width: int | None) -> TrainedRun:
    """A run folder or checkpoint; a plain weights file (export --format weights, or torchreid's)
    when `arch` is given or FILE.json beside it is a weights export's contract."""
    path = Path(path)
    if arch is not None or (path.is_file() and weights_contract(path)):
        return WeightsFile(path, arch, height, width)
    try:
        return TrainedRun(path)
    except ValueError as error:
        if "is not a reidgraft checkpoint" not in str(error):
            raise
        raise ValueError(
            f"{error}; for a model's weights alone pass arch= (and height=, width=), as for torchreid's"
        ) from None
