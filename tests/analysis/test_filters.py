"""Filter analysis on hand-built weights whose norms, histograms and overlaps are known."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidgraft.analysis import (
    filter_norms,
    invalid_iou,
    invalid_mask,
    invalid_ratios,
    layer_entropies,
    network_entropy,
    valid_invalid_l1,
)

REPO = Path(__file__).resolve().parents[2]


def hand_state():
    first = torch.tensor([[1.0, -2.0], [0.0, 0.0], [0.5, 0.25]]).reshape(3, 2, 1, 1)  # L1: 3, 0, 0.75
    second = torch.tensor([0.0005, -10.0]).reshape(2, 1, 1, 1)  # L1: 0.0005, 10
    return {
        "stem.weight": first,
        "stem_bn.weight": torch.ones(3),  # not a convolution: ignored
        "block.weight": second,
        "head.weight": torch.full((4, 2), 100.0),  # a linear layer: ignored
    }


def test_filter_norms_are_per_output_channel_l1_sums_of_convolutions_only():
    norms = filter_norms(hand_state())
    assert list(norms) == ["stem.weight", "block.weight"]
    np.testing.assert_allclose(norms["stem.weight"], [3.0, 0.0, 0.75])
    np.testing.assert_allclose(norms["block.weight"], [0.0005, 10.0])


def test_invalid_ratios_count_filters_strictly_below_each_threshold():
    # All five filters: 3, 0, 0.75, 0.0005, 10.
    assert invalid_ratios(filter_norms(hand_state()), [1e-3, 0.8, 3.0, 4.0]) == [0.4, 0.6, 0.6, 0.8]
    with pytest.raises(ValueError, match="no convolution filters"):
        invalid_ratios({}, [1e-3])


def test_entropies_of_known_histograms():
    two_values = torch.tensor([0.0, 1.0] * 8).reshape(4, 4, 1, 1)  # two equally full bins
    constant = torch.full((2, 3, 3, 3), 0.7)  # one value: entropy 0
    ten_values = torch.arange(10.0).reshape(10, 1, 1, 1)  # one value per bin
    state = {"a.weight": two_values, "b.weight": constant, "c.weight": ten_values}
    per_layer = layer_entropies(state)
    assert per_layer["a.weight"] == pytest.approx(math.log(2))
    assert per_layer["b.weight"] == 0.0
    assert per_layer["c.weight"] == pytest.approx(math.log(10))
    assert network_entropy(state) == pytest.approx(math.log(2) + math.log(10))


def test_invalid_masks_and_iou():
    norms = np.arange(10.0)
    assert np.flatnonzero(invalid_mask(norms)).tolist() == [0, 1]  # 20% of 10
    assert invalid_mask(np.array([5.0, 1.0, 3.0])).tolist() == [False, True, False]  # at least one
    assert np.flatnonzero(invalid_mask(np.ones(5))).tolist() == [0]  # ties: lowest index
    same = {"x": norms, "y": np.array([4.0, 2.0, 9.0, 1.0, 7.0])}
    assert invalid_iou(same, same) == {"x": 1.0, "y": 1.0}
    disjoint = {"x": norms[::-1].copy(), "y": np.array([1.0, 2.0, 9.0, 4.0, 7.0])}
    assert invalid_iou(same, disjoint) == {"x": 0.0, "y": 0.0}
    shifted = {"x": np.array([9.0, 0.0, 1.0, 3, 4, 5, 6, 7, 8, 9]), "y": same["y"]}
    assert invalid_iou(same, shifted)["x"] == pytest.approx(1 / 3)  # {0,1} vs {1,2}
    with pytest.raises(ValueError, match="one architecture"):
        invalid_iou(same, {"x": norms})


def test_valid_and_invalid_averages_use_the_baseline_split():
    baseline = {"a": np.array([0.05, 5.0]), "b": np.array([0.01, 7.0])}
    grafted = {"a": np.array([1.0, 6.0]), "b": np.array([2.0, 8.0])}
    row = valid_invalid_l1(baseline, grafted, 0.1)
    assert row == {
        "threshold": 0.1, "valid_count": 2, "invalid_count": 2, "valid_mean_l1": 7.0, "invalid_mean_l1": 1.5,
    }  # fmt: skip
    assert valid_invalid_l1(baseline, grafted, 1e-4)["invalid_mean_l1"] is None


def test_analyze_tool_writes_plots_and_json(tiny_run, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "analyze.py"), str(tiny_run), "--baseline", str(tiny_run),
         "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "analysis.json").read_text())
    assert set(report["invalid_ratio"]["models"]) == {"model0", "model1", "baseline0", "baseline1"}
    assert len(report["invalid_ratio"]["thresholds"]) == 13
    assert report["invalid_ratio"]["thresholds"][0] == pytest.approx(1e-3)
    assert set(report["invalid_iou"]["pairs"]) == {"model0-model1", "baseline0-baseline1"}
    # A run compared with itself: the same filters, so the same IoU, entropies and averages.
    assert (
        report["invalid_iou"]["pairs"]["model0-model1"]
        == report["invalid_iou"]["pairs"]["baseline0-baseline1"]
    )
    assert report["entropy"]["model1"] == report["entropy"]["baseline1"]
    assert report["valid_invalid_l1"]["split_by"] == "baseline0"
    assert [row["threshold"] for row in report["valid_invalid_l1"]["models"]["model0"]] == [0.1, 1.0]
    for name in ("invalid_ratio.png", "entropy.png", "iou.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.format == "PNG" and picture.width > 200
    assert "model0" in result.stdout and "invalid@1e-3" in result.stdout


def test_analyze_refuses_another_architecture(tiny_run, tmp_path):
    from reidgraft.engine import load_checkpoint
    from reidgraft.engine.checkpoint import save_checkpoint

    payload = load_checkpoint(tiny_run)
    payload["config"] = {**payload["config"], "arch": "resnet50"}
    save_checkpoint(tmp_path / "checkpoint.pt", payload)
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "analyze.py"), str(tiny_run), "--baseline", str(tmp_path),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the baseline trained resnet50, the run mobilenetv2_x1_0" in result.stderr


@pytest.mark.parametrize("thresholds", [["-1"], ["nan"], ["0.1", "inf"]])
def test_split_thresholds_must_be_positive_and_finite(tiny_run, tmp_path, capsys, thresholds):
    from reidgraft.cli import analyze

    code = analyze.main([str(tiny_run), "--output", str(tmp_path / "out"), "--split-thresholds", *thresholds])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "--split-thresholds must be positive finite L1 norms" in error[0]
    assert not (tmp_path / "out").exists()
