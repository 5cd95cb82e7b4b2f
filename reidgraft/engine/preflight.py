"""Everything about a run that can be known before any data is read, checked once: the dataset
and backbone names (and that they belong to one task), the settings of the other task, the
input size, the augmentations, the devices, the precision, the initial weights (found, or
downloaded once where there is internet), and the data's presence. `preflight(config)` returns
the `Plan` the trainer then follows, so nothing is resolved twice; train and compare both call it.

The data's presence is checked right after the dataset's name, before anything that needs torch,
torchvision or torchreid is loaded: a dataset not found, the commonest first error, is said in
the time Python takes to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ConfigError, TrainConfig, check_task_fields
from ..data.registry import CLASSIFICATION, REID, DatasetSpec, dataset_spec

if TYPE_CHECKING:
    import torch

    from ..models import BackboneSpec, InitialWeights


@dataclass(frozen=True)
class Plan:
    """What a run will do, resolved from its config before any work."""

    dataset: DatasetSpec
    backbone: BackboneSpec
    devices: tuple[torch.device, ...]  # model k's device, for every k of the run
    amp: str  # resolved: none, bf16 or fp16
    channels_last: bool
    weights: InitialWeights  # what every model starts from

    @property
    def task(self) -> str:
        return self.dataset.task


def check_dataset(config: TrainConfig) -> DatasetSpec:
    """The dataset's name."""
    try:
        return dataset_spec(config.dataset)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def check_names(config: TrainConfig) -> tuple[DatasetSpec, BackboneSpec]:
    """Dataset and backbone names, that they belong to the same task, and the settings that
    depend on both (input size, last stride, augmentations, the other task's fields)."""
    from ..models import backbone_names, backbone_spec

    dataset = check_dataset(config)
    try:
        backbone = backbone_spec(config.arch)
    except ValueError as error:
        raise ConfigError(str(error).replace("unknown backbone", "unknown arch")) from None
    if dataset.task == CLASSIFICATION and backbone.task != CLASSIFICATION:
        raise ConfigError(
            f"arch {config.arch!r} is a re-ID backbone; {config.dataset} trains one of: "
            f"{', '.join(backbone_names(CLASSIFICATION))}"
        )
    if dataset.task == REID and backbone.task != REID:
        raise ConfigError(
            f"arch {config.arch!r} is a CIFAR classifier; re-ID datasets train torchreid backbones "
            f"({', '.join(backbone_names(REID)[:6])}, ...)"
        )
    try:
        if dataset.task == REID:
            backbone.check_input_size(config.height, config.width)
        check_task_fields(config, dataset.task)
        if dataset.task == CLASSIFICATION:
            from ..data.classification import check_augment

            check_augment(config.transforms)
        else:
            from ..data.loaders import check_reid_augment

            check_reid_augment(config.transforms)
            backbone.check_last_stride(config.last_stride)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return dataset, backbone


def preflight(config: TrainConfig, *, data: bool = True, download: bool | None = None) -> Plan:
    """Check `config` against this machine and the files it names, in this order: the dataset's
    name, (with `data`) that the data is there, the backbone's name and what depends on both,
    devices, precision, initial weights, the progress setting. Every problem is a ConfigError or
    a DataMissingError with one line naming it and the fix. `download`: whether missing ImageNet
    weights may be downloaded (default: unless REIDGRAFT_OFFLINE is set)."""
    if data:
        check_dataset(config).check_data(config.root, config.to_dict())
    from ..device import ring_devices
    from ..models import WeightsError, resolve_weights
    from ..progress import log_seconds

    dataset, backbone = check_names(config)
    try:
        devices = tuple(ring_devices(config.device, config.device_ids(), config.models))
        amp, channels_last = backbone.precision(
            config.amp, config.channels_last, devices[0], (config.height, config.width), training=True
        )
        weights = resolve_weights(config.arch, config.weights, download=download)
        log_seconds()  # REIDGRAFT_LOG_SECONDS, read by the progress lines of the epochs
    except (ValueError, WeightsError) as error:
        raise ConfigError(str(error)) from None
    return Plan(dataset, backbone, devices, amp, channels_last, weights)
