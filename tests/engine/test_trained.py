"""TrainedRun: the one reader of a trained run, for the extractor, export, evaluate, compare,
the demo and grafting+ teachers."""

import json
import shutil

import pytest
import torch

from reidgraft.config import build_config
from reidgraft.engine.checkpoint import read_checkpoint
from reidgraft.engine.trained import TrainedRun

CPU = torch.device("cpu")


def test_it_reads_what_the_run_saved(tiny_run):
    run = TrainedRun(tiny_run)
    saved = read_checkpoint(tiny_run / "checkpoint.pt")
    assert (run.count, run.task, run.arch, run.epoch) == (2, "reid", saved["config"]["arch"], 1)
    assert run.config == build_config(saved["config"]) and run.raw_config == saved["config"]
    assert run.input_size == (32, 16) and run.num_classes == saved["num_classes"]
    assert run.data == saved["data"] and run.metrics == json.loads((tiny_run / "metrics.json").read_text())
    for k in range(2):
        model = run.model(k, CPU)
        assert not model.training
        for key, tensor in model.state_dict().items():
            assert torch.equal(tensor, saved["models"][k][key]), key
    # a checkpoint file is read as itself, its folder's metrics as the run's
    assert TrainedRun(tiny_run / "checkpoint.pt").path == tiny_run


def test_the_precision_is_the_one_the_run_was_evaluated_in(tiny_run, tmp_path):
    run = TrainedRun(tiny_run)
    recorded = run.metrics["precision"]
    assert run.precision("auto", CPU) == (recorded["amp"], recorded["channels_last"])
    assert run.precision("none", CPU) == ("none", True)  # asked for: fp32, the measured layout
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    del metrics["precision"]  # a run from before precision was recorded: fp32, NCHW
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert TrainedRun(copy).precision("auto", CPU) == ("none", False)
    model = TrainedRun(copy).model(0, CPU, channels_last=True)
    assert model.conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_recommended_model_is_chosen_on_validation_never_on_the_test_set(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    for chosen_on, expected in (
        ("validation", (1, "the best of K on validation")),
        ("test set", (0, "model 0")),
    ):
        metrics["report"] = {"best_of_k": {"model": 1, "chosen_on": chosen_on}}
        (copy / "metrics.json").write_text(json.dumps(metrics))
        assert TrainedRun(copy).recommended_model() == expected
    (copy / "metrics.json").write_text("{damaged")
    k, why = TrainedRun(copy).recommended_model()
    assert k == 0 and why.startswith("model 0: ") and "metrics.json cannot be read" in why


def test_bad_requests_are_one_line(tiny_run, tmp_path):
    run = TrainedRun(tiny_run)
    with pytest.raises(ValueError, match="model 2: the run .* has models 0..1"):
        run.model(2)
    with pytest.raises(ValueError, match="no checkpoint at"):
        TrainedRun(tmp_path)
    payload = read_checkpoint(tiny_run / "checkpoint.pt")
    torch.save({**payload, "task": "classification"}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="is a classification run; FeatureExtractor needs"):
        TrainedRun(tmp_path).require_reid("FeatureExtractor needs a re-ID run")
