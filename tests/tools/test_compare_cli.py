"""tools/compare.py on a tiny synthetic recipe: every row of the table, then reuse of finished runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def compare(*args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "compare.py"), *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    from reidgraft.data.datasets import synthetic_splits

    root = tmp_path_factory.mktemp("data")
    synthetic_splits(root, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)
    path = root / "tiny.yaml"
    path.write_text(
        f"dataset: synthetic\nroot: {root}\narch: mobilenetv2_x1_0\nheight: 32\nwidth: 16\nepochs: 2\n"
        "batch_size: 8\noptimizer: sgd\nlr: 0.01\neval_batch_size: 32\ndevice: cpu\n"
    )
    return path


def test_table_has_every_row_and_a_second_call_reuses_the_runs(recipe, tmp_path):
    output = tmp_path / "comparison"
    first = compare(
        "--config", recipe, "--seeds", "2", "--models", "1", "2", "--output", output, cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    report = json.loads((output / "comparison.json").read_text())
    assert [row["method"] for row in report["rows"]] == [
        "single model", "2 models, no grafting (best)", "2 models, grafting (best)",
    ]  # fmt: skip
    for row in report["rows"]:
        assert len(row["per_seed"]) == 2 and len(row["runs"]) == 2
        values = [seed["mAP"] for seed in row["per_seed"]]
        assert row["mAP"][0] == pytest.approx(sum(values) / 2)
        assert row["mAP"][1] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
        # The score is the run's best model at the last epoch (2 epochs: one graft, after the first).
        for name, seed_score in zip(row["runs"], row["per_seed"]):
            final = json.loads((output / name / "metrics.json").read_text())["final"]
            assert seed_score["mAP"] == max(model["mAP"] for model in final)
    grafted = json.loads((output / "seed1-k2-graft" / "metrics.json").read_text())
    independent = json.loads((output / "seed1-k2-nograft" / "metrics.json").read_text())
    assert grafted["epochs"][0]["alphas"] and independent["epochs"][0]["alphas"] is None
    assert grafted["epochs"][0]["lr"] == independent["epochs"][0]["lr"]  # same per-model learning rates
    table = (output / "comparison.md").read_text()
    assert "mAP (best epoch, chosen on the test set)" in table and table.count("\n| ") == 4
    with Image.open(output / "comparison.png") as picture:
        assert picture.format == "PNG"
    assert first.stdout.count("] trained") == 6

    stamps = {path: path.stat().st_mtime_ns for path in output.glob("*/checkpoint.pt")}
    second = compare(
        "--config", recipe, "--seeds", "2", "--models", "1", "2", "--output", output, cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("] reused") == 6 and "] trained" not in second.stdout
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert json.loads((output / "comparison.json").read_text())["rows"] == report["rows"]

    # Seed blocks do not overlap: model k of replicate s has seed 1000 s + k.
    seeds = {name: torch.load(output / name / "checkpoint.pt", weights_only=True)["config"]["seed"]
             for name in ("seed0-k2-graft", "seed1-k2-graft", "seed1-k1-nograft")}  # fmt: skip
    assert seeds == {"seed0-k2-graft": 0, "seed1-k2-graft": 1000, "seed1-k1-nograft": 1000}

    # A changed recipe never reuses the runs of another one: one line naming the field.
    changed = tmp_path / "changed.yaml"
    changed.write_text(recipe.read_text().replace("lr: 0.01", "lr: 0.02"))
    third = compare("--config", changed, "--seeds", "1", "--models", "2", "--output", output, cwd=tmp_path)
    assert third.returncode == 2 and "Traceback" not in third.stderr
    (line,) = third.stderr.strip().splitlines()
    assert "holds a run of another recipe: lr 0.01 (now 0.02)" in line and "another --output" in line
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


def test_bad_arguments_are_one_line(recipe, tmp_path):
    result = compare("--config", recipe, "--seeds", "0", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == (
        "compare: --seeds and every --models value must be at least 1"
    )
    missing = compare("--config", tmp_path / "none.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "config file not found" in missing.stderr
