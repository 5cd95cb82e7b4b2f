"""Speed settings on the CPU: bf16 autocast and channels_last train and checkpoint, measured
defaults per backbone, no host synchronisation per step, and precision errors in one line."""

import itertools
import json
from types import SimpleNamespace

import pytest
import torch

from reidgraft.data.loaders import set_epoch
from reidgraft.device import cpu_has_bf16, default_precision, resolve_precision
from reidgraft.engine import Trainer, load_checkpoint
from reidgraft.engine.features import models_from_checkpoint
from tests.engine.test_trainer import splits, tiny_config  # noqa: F401 (a fixture)

CPU = torch.device("cpu")


class Prepared(list):
    """Ready batches in the shape of a training loader (the trainer sets `.sampler.epoch`)."""

    sampler = SimpleNamespace(epoch=0)


needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")


@needs_bf16
def test_bf16_channels_last_trains_and_its_checkpoint_loads(splits, tmp_path):  # noqa: F811
    # ResNet18: bf16's default backbones are ResNets (see reidgraft/device.py about MobileNetV2)
    config = tiny_config(arch="resnet18", amp="bf16", channels_last=True)
    trainer = Trainer(config, splits, tmp_path, log=lambda line: None)
    final = trainer.fit()
    assert all(0.0 <= row["mAP"] <= 1.0 for row in final)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["precision"] == {"amp": "bf16", "channels_last": True}
    assert all(loss == loss and loss > 0 for epoch in metrics["epochs"] for loss in epoch["loss"])
    payload = load_checkpoint(tmp_path)
    assert all(t.dtype == torch.float32 for t in payload["models"][0].values() if t.is_floating_point())
    (model, _) = models_from_checkpoint(payload, CPU)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 16)).shape[0] == 2


def test_measured_defaults_follow_backbone_and_size():
    assert default_precision(CPU, "mobilenetv2_x1_0", (128, 64)) == ("none", True)
    bf16 = "bf16" if cpu_has_bf16() else "none"
    assert default_precision(CPU, "mobilenetv2_x1_0", (256, 128)) == ("none", True)
    assert default_precision(CPU, "resnet50", (128, 64)) == (bf16, True)
    assert default_precision(torch.device("cuda"), "resnet50", (256, 128)) == ("none", False)
    assert resolve_precision("none", False, CPU, "resnet50", (256, 128)) == ("none", False)


def test_precisions_the_hardware_lacks_are_one_line():
    with pytest.raises(ValueError, match="--amp fp16 needs a CUDA GPU .*; on CPU use --amp bf16"):
        resolve_precision("fp16", None, CPU, "resnet50", (256, 128))


def test_a_training_step_never_waits_for_the_device(splits, tmp_path, monkeypatch):  # noqa: F811
    """Reading a tensor's value on the host (item, float, int, bool, tolist) synchronises with the
    device; a step must not do it: one epoch of 3 steps reads as often as one of 1 step."""
    trainer = Trainer(tiny_config(models=2), splits, tmp_path, log=lambda line: None)
    # Batches read ahead of time: the images' augmentation reads random numbers on the host, and
    # only the training step is under test.
    for loader in trainer.train_loaders:
        set_epoch([loader], 0)
    batches = [list(itertools.islice(loader, 3)) for loader in trainer.train_loaders]
    trainer.train_loaders = [Prepared(own) for own in batches]
    reads = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda self, *a, _original=original, _name=name: reads.append(_name) or _original(self, *a),
        )
    counts = []
    for steps in (1, 3):
        reads.clear()
        trainer.train_epoch(0, max_steps=steps)
        counts.append(len(reads))
    assert counts[0] == counts[1], counts


def test_loaders_pin_memory_only_for_cuda(splits, tmp_path):  # noqa: F811
    trainer = Trainer(tiny_config(workers=1), splits, tmp_path, log=lambda line: None)
    assert all(not loader.pin_memory and loader.persistent_workers for loader in trainer.train_loaders)


def test_a_diverged_model_stops_the_run_before_it_is_grafted(splits, tmp_path, monkeypatch):  # noqa: F811
    trainer = Trainer(tiny_config(models=2), splits, tmp_path, log=lambda line: None)
    monkeypatch.setattr(
        trainer, "train_epoch", lambda epoch: {"loss": [0.5, float("nan")], "train_accuracy": [0, 0]}
    )
    with pytest.raises(ValueError, match=r"model 1's training loss became nan in epoch 1 \(amp none\)"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.pt").exists()
