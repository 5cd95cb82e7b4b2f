"""The model the demo searches with: one model of a run, as a `FeatureExtractor` of evaluation's
raw features (ranked by the run's own metric), in the precision the run was evaluated in, and a
fingerprint of everything its features depend on (for the gallery cache)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..engine.trained import TrainedRun
from ..extractor import FeatureExtractor
from ..files import state_fingerprint
from .gallery import DemoError


@dataclass
class RunModel:
    """One model of a training run, ready to embed images."""

    extractor: FeatureExtractor  # normalize=False: evaluation's features
    fingerprint: str

    @property
    def run_dir(self) -> Path:
        return self.extractor.run.path

    @property
    def k(self) -> int:
        return self.extractor.k

    @property
    def arch(self) -> str:
        return self.extractor.arch

    @property
    def height(self) -> int:
        return self.extractor.height

    @property
    def width(self) -> int:
        return self.extractor.width

    @property
    def metric(self) -> str:
        return self.extractor.evaluation_metric

    @property
    def model(self) -> nn.Module:
        return self.extractor.model

    @property
    def device(self) -> torch.device:
        return self.extractor.device

    @property
    def amp(self) -> str:
        return self.extractor.amp

    @property
    def channels_last(self) -> bool:
        return self.extractor.channels_last

    @property
    def data(self) -> dict | None:
        """What the run recorded about its data (`ReidSplits.fingerprint`)."""
        return self.extractor.run.data

    @property
    def label(self) -> str:
        return f"model {self.k} of {self.run_dir.name} ({self.arch})"


def load_run_model(
    run_dir: str | Path, k: int | None, device: torch.device, amp: str = "none"
) -> tuple[RunModel, dict]:
    """Model k of a run (default: the one it recommends, as FeatureExtractor: the best of K on
    validation, else model 0, never a choice made on the test set), embedding in the precision
    `amp` asks for (`auto`: the one the run was evaluated in, as `reidgraft-evaluate`); and the
    run's config."""
    try:
        run = TrainedRun(run_dir)
        run.require_reid("the demo searches with re-ID models")
        if k is not None:
            run.check_model(k, "--model")
        extractor = FeatureExtractor(run, model=k, device=str(device), amp=amp, normalize=False)
    except DemoError:
        raise
    except ValueError as error:
        raise DemoError(str(error)) from None
    config = run.raw_config
    # features under autocast or another memory format differ in the last bits: another cache entry
    extra = (config["arch"], config["height"], config["width"], config["metric"], extractor.amp)
    fingerprint = state_fingerprint(run.state(extractor.k), extra=(*extra, extractor.channels_last))
    return RunModel(extractor, fingerprint), config
