"""tools/evaluate.py on a tiny finished run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def evaluate_cli(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "evaluate.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_evaluate_reproduces_the_run_metrics_and_draws_results(tiny_run, tmp_path):
    result = evaluate_cli(tiny_run, "--model", "1", "--visualize", "2", "--output", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "evaluation.json").read_text())["models"]
    final = json.loads((tiny_run / "metrics.json").read_text())["final"]
    assert [row["model"] for row in rows] == [1]
    assert rows[0] == pytest.approx(final[1], abs=1e-9)
    pictures = sorted((tmp_path / "ranked").glob("*.png"))
    assert [p.name for p in pictures] == ["model1_query0000.png", "model1_query0001.png"]
    with Image.open(pictures[0]) as picture:
        assert picture.width > picture.height > 0


def test_bad_model_index_is_one_line(tiny_run):
    result = evaluate_cli(tiny_run, "--model", "5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "evaluate: --model 5: the run has models 0..1"


def test_a_collapsed_embedding_is_warned_about_once(tiny_run, tmp_path):
    import shutil

    from reidgraft.engine.checkpoint import read_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    payload = read_checkpoint(run / "checkpoint.pt")
    for state in payload["models"]:  # a zero first convolution: every image gives the same feature
        state["conv1.conv.weight"].zero_()
    save_checkpoint(run / "checkpoint.pt", payload)

    result = evaluate_cli(run, "--output", tmp_path / "out")

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "collapsed" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: model 0: ")
    rows = json.loads((tmp_path / "out" / "evaluation.json").read_text())["models"]
    assert len(rows) == 2 and all(row["mAP"] < 0.5 for row in rows)


def test_data_that_differs_from_the_runs_is_refused(tiny_run, tmp_path):
    from reidgraft.data.datasets import synthetic_splits

    other_root = tmp_path / "other"  # the same generator at another size
    synthetic_splits(other_root, train_ids=4, test_ids=4, images_per_id=4, distractors=2, height=32, width=16)

    result = evaluate_cli(tiny_run, "--root", other_root, "--output", tmp_path / "out")

    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "was trained on another synthetic set" in line and "train_ids=4 (wanted 8)" in line
    assert not (tmp_path / "out" / "evaluation.json").exists()


def test_a_missing_synthetic_set_is_written_again_as_the_run_had_it(tiny_run, tmp_path):
    result = evaluate_cli(tiny_run, "--root", tmp_path / "gone", "--output", tmp_path / "out")

    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "out" / "evaluation.json").read_text())["models"]
    final = json.loads((tiny_run / "metrics.json").read_text())["final"]
    assert len(rows) == len(final) == 2
    assert all(row == pytest.approx(expected, abs=1e-9) for row, expected in zip(rows, final, strict=True))


def test_the_run_records_its_data(tiny_run):
    data = json.loads((tiny_run / "metrics.json").read_text())["data"]
    assert data["dataset"] == "synthetic" and data["generator"]["params"]["train_ids"] == 8
    assert data["images"]["train"] == 8 * 6 and len(data["items_sha256"]) == 64


def test_evaluate_refuses_a_users_evaluation_json_and_rewrites_its_own(tiny_run, tmp_path):
    (tmp_path / "evaluation.json").write_text('{"mine": true}')
    refused = evaluate_cli(tiny_run, "--model", "0", "--output", tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "evaluation.json was not written by reidgraft" in refused.stderr
    assert (tmp_path / "evaluation.json").read_text() == '{"mine": true}'
    again = tmp_path / "again"
    for _ in range(2):  # its own output, written twice
        assert evaluate_cli(tiny_run, "--model", "0", "--output", again).returncode == 0
