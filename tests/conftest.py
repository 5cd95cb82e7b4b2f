"""Shared test fixtures: small networks with the layouts grafting must handle, and a tiny trained run."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` run where torch sees a GPU (scripts/gpu-check.sh) and skip elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run scripts/gpu-check.sh on a machine with one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for process groups and servers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def small_disk(tmp_path):
    """Factory: `small_disk(megabytes)` is a folder on a tmpfs of that size (a full disk in small),
    unmounted after the test; skips where this machine does not let the tests mount one."""
    mounted = []

    def make(megabytes: float) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={int(megabytes * 1024)}k", "tmpfs", str(folder)],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


class TinyNet(nn.Module):
    """A BN before the first conv, a conv whose key lacks "conv", BN layers and a linear head."""

    def __init__(self, width: int = 4, classes: int = 5):
        super().__init__()
        self.pre = nn.BatchNorm2d(3)
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.block = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width))
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = torch.relu(self.norm(self.stem(self.pre(x))))
        x = torch.relu(self.block(x))
        return self.head(x.mean(dim=(2, 3)))


def randomised(model: nn.Module, seed: int) -> nn.Module:
    """Give every floating entry (BN statistics included) distinct random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (0.5 + seed % 3))
            else:
                tensor.fill_(seed)
    return model


@pytest.fixture
def tiny_nets():
    """Factory: `tiny_nets(k)` gives k TinyNets with different random weights."""
    return lambda count, **kw: [randomised(TinyNet(**kw), seed=11 * k + 1) for k in range(count)]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 2-model, 1-epoch run on a tiny synthetic set (32x16 images), as tools/train.py
    writes it; its config's `root` points at the data. Shared: tests must not change it."""
    from reidgraft.config import build_config
    from reidgraft.data.datasets import synthetic_splits
    from reidgraft.engine import Trainer

    root = tmp_path_factory.mktemp("data")
    splits = synthetic_splits(
        root, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16
    )
    config = build_config(
        dataset="synthetic", root=str(root), models=2, epochs=1, batch_size=8, height=32, width=16,
        optimizer="sgd", lr=0.01, device="cpu",
    )  # fmt: skip
    run_dir = tmp_path_factory.mktemp("run")
    Trainer(config, splits, run_dir, log=lambda line: None).fit()
    return run_dir


@pytest.fixture(scope="session")
def lively_run(tiny_run, tmp_path_factory):
    """tiny_run with freshly initialised weights: features that vary from image to image (one
    epoch on 32x16 images leaves them nearly constant, which would make every cosine 1)."""
    from reidgraft.engine import load_checkpoint
    from reidgraft.engine.checkpoint import save_checkpoint
    from reidgraft.models import build_backbone

    payload = load_checkpoint(tiny_run)
    payload["models"] = [
        build_backbone(payload["config"]["arch"], payload["num_classes"], seed=k).state_dict()
        for k in range(2)
    ]
    run = tmp_path_factory.mktemp("lively")
    save_checkpoint(run / "checkpoint.pt", payload)
    return run


@pytest.fixture(scope="session")
def collapsed_val_run(tmp_path_factory):
    """A 1-model, 1-epoch synthetic run holding out 4 validation identities; its features are
    nearly constant (one epoch on 32x16 images)."""
    from reidgraft.config import build_config
    from reidgraft.data.datasets import synthetic_splits
    from reidgraft.engine import Trainer

    root = tmp_path_factory.mktemp("data")
    splits = synthetic_splits(
        root, train_ids=10, test_ids=6, images_per_id=6, distractors=2, height=32, width=16
    )
    config = build_config(
        dataset="synthetic", root=str(root), models=1, epochs=1, batch_size=8, height=32, width=16,
        optimizer="sgd", lr=0.01, device="cpu", val_ids=4,
    )  # fmt: skip
    run = tmp_path_factory.mktemp("run")
    Trainer(config, splits, run, log=lambda line: None).fit()  # (it holds the 4 out itself)
    return run


@pytest.fixture(scope="session")
def val_run(collapsed_val_run, tmp_path_factory):
    """collapsed_val_run with freshly initialised weights: features that vary from person to person."""
    from reidgraft.engine import load_checkpoint
    from reidgraft.engine.checkpoint import save_checkpoint
    from reidgraft.models import build_backbone

    payload = load_checkpoint(collapsed_val_run)
    payload["models"] = [
        build_backbone(payload["config"]["arch"], payload["num_classes"], seed=3).state_dict()
    ]
    run = tmp_path_factory.mktemp("lively")
    save_checkpoint(run / "checkpoint.pt", payload)
    return run
