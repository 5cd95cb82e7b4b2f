"""A run whose models give input-dependent features, and galleries built from its dataset."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from reidgraft.demo import dataset_gallery
from reidgraft.engine import load_checkpoint
from reidgraft.engine.checkpoint import save_checkpoint
from reidgraft.models import build_backbone


@pytest.fixture(scope="package", autouse=True)
def gradio_temp_dir(tmp_path_factory) -> Path:
    """Gradio's uploads and gradio_client's downloads go to pytest's temporary folder, which
    pytest prunes, instead of piling up in /tmp (gradio_client makes a folder per download in
    tempfile.gettempdir() whatever it is told)."""
    folder = tmp_path_factory.mktemp("gradio")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(folder))
        patch.setattr(tempfile, "tempdir", str(folder))
        yield folder


@pytest.fixture(scope="module")
def demo_run(tiny_run, tmp_path_factory) -> Path:
    """tiny_run with freshly initialised weights. One epoch on 32x16 images leaves features nearly
    constant; untrained ones differ from image to image, which is what the search tests need."""
    payload = load_checkpoint(tiny_run)
    arch, classes = payload["config"]["arch"], payload["num_classes"]
    payload["models"] = [build_backbone(arch, classes, seed=k).state_dict() for k in range(2)]
    run_dir = tmp_path_factory.mktemp("demo_run")
    save_checkpoint(run_dir / "checkpoint.pt", payload)
    shutil.copy(tiny_run / "metrics.json", run_dir / "metrics.json")
    return run_dir


@pytest.fixture(scope="module")
def run_config(demo_run) -> dict:
    return load_checkpoint(demo_run)["config"]


@pytest.fixture
def cpu():
    return torch.device("cpu")


@pytest.fixture(scope="module")
def planted(demo_run, run_config, tmp_path_factory):
    """A folder gallery: the dataset's gallery plus an exact copy of a query under a plain name."""
    dataset = dataset_gallery("synthetic", run_config["root"])
    folder = tmp_path_factory.mktemp("planted")
    for path in dataset.paths:
        shutil.copy(path, folder)
    query = dataset.example_queries[0]
    shutil.copy(query, folder / "planted.jpg")
    return folder, query
