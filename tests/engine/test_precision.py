"""Speed settings on the CPU: bf16 autocast and channels_last train and checkpoint, measured
defaults per backbone, no host synchronisation per step, and precision errors in one line."""

import itertools
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from reidgraft.data.loaders import set_epoch
from reidgraft.device import cpu_has_bf16, default_precision
from reidgraft.engine import Trainer, load_checkpoint
from reidgraft.engine.trained import TrainedRun
from reidgraft.models import backbone_spec
from reidgraft.models.registry import bf16_hazard, check_input_size
from tests.engine.test_trainer import splits, tiny_config  # noqa: F401 (a fixture)

CPU = torch.device("cpu")


class Prepared(list):
    """Ready batches in the shape of a training loader (the trainer sets `.sampler.epoch`)."""

    sampler = SimpleNamespace(epoch=0)


needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")


@needs_bf16
def test_bf16_channels_last_trains_and_its_checkpoint_loads(splits, tmp_path):  # noqa: F811
    # ResNet18: bf16's default backbones are ResNets (see reidgraft/device.py about MobileNetV2)
    # 64x48: smaller, and a strided convolution would make a map one pixel wide (see below)
    config = tiny_config(arch="resnet18", amp="bf16", channels_last=True, height=64, width=48)
    trainer = Trainer(config, splits, tmp_path, log=lambda line: None)
    final = trainer.fit()
    assert all(0.0 <= row["mAP"] <= 1.0 for row in final)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["precision"] == {"amp": "bf16", "channels_last": True}
    assert all(loss == loss and loss > 0 for epoch in metrics["epochs"] for loss in epoch["loss"])
    payload = load_checkpoint(tmp_path)
    assert all(t.dtype == torch.float32 for t in payload["models"][0].values() if t.is_floating_point())
    (model, _) = TrainedRun(tmp_path).models(CPU)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 48)).shape[0] == 2


def defaults(arch: str, size: tuple[int, int], device: torch.device = CPU) -> tuple[str, bool]:
    return default_precision(device, backbone_spec(arch).bf16_gains_on_cpu(size))


def test_measured_defaults_follow_backbone_and_size():
    assert defaults("mobilenetv2_x1_0", (128, 64)) == ("none", True)
    bf16 = "bf16" if cpu_has_bf16() else "none"
    assert defaults("mobilenetv2_x1_0", (256, 128)) == (bf16, True)
    assert defaults("resnet50", (128, 64)) == (bf16, True)
    assert defaults("resnet50", (256, 128), torch.device("cuda")) == ("none", False)
    assert backbone_spec("resnet50").precision("none", False, CPU, (256, 128)) == ("none", False)


ONE_STRIDED_STEP = """
import json, torch
torch.manual_seed(0)
conv = torch.nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False).to(memory_format=torch.channels_last)
finite = []
for height, width in [(h, w) for w in (2, 1) for h in (1, 2, 3)]:
    conv.zero_grad()
    images = torch.randn(8, 64, height, width).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = conv(images).float().sum()
    # leave freed memory full of NaN: the backward's fresh buffers come from it, so a kernel
    # reading memory it never wrote shows it
    spoiled = [torch.full((2**k // 4,), float("nan")) for k in range(8, 25) for _ in range(8)]
    del spoiled
    loss.backward()
    finite.append(bool(torch.isfinite(conv.weight.grad).all()))
print(json.dumps(finite))
"""


@needs_bf16
def test_onednn_bf16_weight_gradient_is_wrong_on_one_pixel_wide_maps():
    # One of the faults bf16_hazard steers around (depthwise convolutions have it too). Should
    # this start failing, torch fixed it, and the guard in resolve_precision can go. A fresh
    # process: what a read of unwritten memory finds depends on the heap's history.
    done = subprocess.run(
        [sys.executable, "-c", ONE_STRIDED_STEP], capture_output=True, text=True, check=True
    )
    finite = json.loads(done.stdout)
    assert finite[:3] == [True] * 3  # two pixels wide: right
    assert finite[3:] == [False] * 3  # one pixel wide: NaN


# Every backbone family the recipes use, at each size class: 128x64 (the recipes' small size),
# 64x32 and 48x24 (where ResNets' layer4 makes a map one pixel wide), 32x16 (layer3 too).
HEAP_CASES = [
    f"{arch}:{size}"
    for arch in ("resnet18", "resnet50", "mobilenetv2_x1_0", "osnet_x1_0")
    for size in ("128x64", "64x32", "48x24", "32x16")
]
CPUINFO = Path("/proc/cpuinfo")
needs_amx = pytest.mark.skipif(
    not CPUINFO.exists() or "amx_bf16" not in CPUINFO.read_text(),
    reason="the forward fault was seen on AMX CPUs only",
)


@pytest.fixture(scope="module")
def heap_fill_counts() -> dict[str, int]:
    """How many gradients of one bf16 step differ with what freed memory held (heap_fill_step.py),
    per backbone and size, from a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.engine.heap_fill_step", *HEAP_CASES],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


@needs_bf16
def test_bf16_is_never_chosen_nor_allowed_where_its_step_reads_unwritten_memory(heap_fill_counts):
    wrong = []
    for case, differing in heap_fill_counts.items():
        arch, size = case.split(":")
        height, width = map(int, size.split("x"))
        spec = backbone_spec(arch)
        for training in (True, False):
            try:
                amp = spec.precision("bf16", None, CPU, (height, width), training=training)[0]
            except ValueError:
                amp = "refused"
            if differing and amp == "bf16":
                wrong.append(f"{case}: {differing} gradients differ, yet --amp bf16 is allowed")
            if (
                differing
                and spec.precision("auto", None, CPU, (height, width), training=training)[0] == "bf16"
            ):
                wrong.append(f"{case}: {differing} gradients differ, yet auto picks bf16")
    assert not wrong, wrong
    assert heap_fill_counts["resnet50:128x64"] == 0  # the guard lets bf16 run where it is right


@needs_bf16
@needs_amx
def test_onednn_bf16_forward_reads_unwritten_memory_on_amx(heap_fill_counts):
    # The fault of issue 35: a 3x3, stride-2 convolution from a map 2 pixels wide (ResNet50's
    # layer4.0.conv2 at 64x32) gives every gradient at random. Should this start failing, torch
    # fixed it, and bf16_hazard can allow these sizes again.
    # (at random: how many gradients differ depends on what the reads find; all 161 of ResNet50's
    # did on the AMX Xeon of 2026-12-07)
    assert heap_fill_counts["resnet50:64x32"] > 0 or heap_fill_counts["resnet18:48x24"] > 0


def test_the_shape_probe_finds_strided_convolutions_that_make_one_pixel_maps():
    assert bf16_hazard("resnet18", 32, 16) == "layer3.0.conv1"
    assert bf16_hazard("resnet50", 64, 32) == "layer4.0.conv2"  # from a map 2 pixels wide
    assert bf16_hazard("mobilenetv2_x1_0", 48, 24) == "conv7.0.dwconv2.conv"
    assert bf16_hazard("resnet18", 32, 32) == "layer4.0.conv1"  # one pixel tall as well
    assert bf16_hazard("resnet18", 64, 48) is None
    assert bf16_hazard("resnet50", 256, 128) is None


def test_bf16_is_refused_or_avoided_where_it_would_go_wrong():
    resnet50 = backbone_spec("resnet50")
    for training, verb, fix in (
        (True, "train", "use --width 40 or more, or --amp none"),
        (False, "run", "run with --amp none \\(or auto\\)"),  # (a trained model's size is fixed)
    ):
        with pytest.raises(
            ValueError,
            match=f"--amp bf16 cannot {verb} resnet50 at 64x32 .*layer4.0.conv2 makes a map one pixel "
            f"wide or tall.*; {fix}$",
        ):
            resnet50.precision("bf16", None, CPU, (64, 32), training=training)
        assert resnet50.precision("auto", None, CPU, (64, 32), training=training) == ("none", True)
    bf16 = "bf16" if cpu_has_bf16() else "none"
    assert resnet50.precision("auto", None, CPU, (64, 48), training=True) == (bf16, True)
    with pytest.raises(ValueError, match="; use --height 40 --width 40 or more, or --amp none$"):
        backbone_spec("resnet18").precision("bf16", None, CPU, (32, 32), training=True)
    assert backbone_spec("resnet18").bf16_safe_size(32, 16) == (40, 40)
    assert bf16_hazard("resnet18", 40, 40) is None and bf16_hazard("resnet18", 40, 32) is not None


def test_input_sizes_a_backbone_cannot_take_are_refused():
    with pytest.raises(
        ValueError, match="height 7 is too small for resnet50: it downsamples by 32.*--height 16"
    ):
        check_input_size("resnet50", 7, 64)
    with pytest.raises(
        ValueError, match="width 7 is too small for osnet_x1_0: it downsamples by 16.*--width 8"
    ):
        check_input_size("osnet_x1_0", 64, 8 - 1)
    check_input_size("resnet50", 16, 16)


def test_precisions_the_hardware_lacks_are_one_line():
    with pytest.raises(ValueError, match="--amp fp16 needs a CUDA GPU .*; on CPU use --amp bf16"):
        backbone_spec("resnet50").precision("fp16", None, CPU, (256, 128))


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


def test_a_nan_loss_under_bf16_names_bf16(splits, tmp_path, monkeypatch):  # noqa: F811
    trainer = Trainer(tiny_config(models=2), splits, tmp_path, log=lambda line: None)
    trainer.amp = "bf16"  # (as chosen for a size where bf16 is allowed)
    monkeypatch.setattr(
        trainer, "train_epoch", lambda epoch: {"loss": [float("nan"), 0.5], "train_accuracy": [0, 0]}
    )
    with pytest.raises(
        ValueError,
        match=r"model 0's training loss became nan in epoch 1 under bf16 autocast; bf16 is the "
        r"likely cause: train with --amp none",
    ):
        trainer.fit()


class Spoiled(torch.nn.Module):
    """Features that turn NaN from the second image on (what a kernel's stray read gives)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, images):
        features = images.flatten(1)[:, :4] * self.scale
        features[1:] = float("nan")
        return features


def test_nan_features_under_bf16_name_bf16(splits):  # noqa: F811
    from reidgraft.engine.features import extract_features

    query = splits.query[:3]
    shape = dict(height=32, width=16, batch_size=4, workers=0)
    (fine,) = extract_features([Spoiled()], query, amp="none", **shape)  # fp32: left to the evaluator
    assert fine.isnan().any()
    with pytest.raises(
        ValueError,
        match=r"model 0's features hold NaN or infinite values under bf16 autocast \(features\); "
        r"bf16 is the likely cause: run with --amp none",
    ):
        extract_features([Spoiled()], query, amp="bf16", **shape)
