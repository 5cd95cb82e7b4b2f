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


def test_every_row_and_paired_entry_then_reuse_and_refusal(recipe, tmp_path):
    output = tmp_path / "comparison"
    args = ("--config", recipe, "--seeds", "2", "--models", "2", "--output", output)
    first = compare(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = json.loads((output / "comparison.json").read_text())
    assert [(row["method"], row["models"]) for row in report["rows"]] == [
        ("single", 1), ("nograft", 2), ("nograft_ensemble", 2), ("nograft_average", 2), ("graft", 2),
        ("graft_same_lr", 2),
    ]  # fmt: skip
    rows = {row["method"]: row for row in report["rows"]}
    for row in report["rows"]:
        for part in ("model0", "mean", "best_of_k"):
            values = row[part]["per_seed"]
            assert len(values) == 2 and row[part]["mAP"][0] == pytest.approx(sum(values) / 2)
            assert row[part]["mAP"][1] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    # per-query scores average to the runs' own metrics: model 0 and the mean over K
    for method in ("nograft", "graft", "graft_same_lr"):
        for seed in range(2):
            final = json.loads((output / f"seed{seed}-k2-{method}" / "metrics.json").read_text())["final"]
            assert rows[method]["model0"]["per_seed"][seed] == pytest.approx(final[0]["mAP"], abs=1e-9)
            mean = (final[0]["mAP"] + final[1]["mAP"]) / 2
            assert rows[method]["mean"]["per_seed"][seed] == pytest.approx(mean, abs=1e-9)
        assert rows[method]["best_of_k"]["chosen_on"] == "test set"  # the recipe holds out no validation
    grafted = json.loads((output / "seed1-k2-graft" / "metrics.json").read_text())
    independent = json.loads((output / "seed1-k2-nograft" / "metrics.json").read_text())
    same_lr = json.loads((output / "seed1-k2-graft_same_lr" / "metrics.json").read_text())
    assert grafted["epochs"][0]["alphas"] and independent["epochs"][0]["alphas"] is None
    assert grafted["epochs"][0]["lr"] == independent["epochs"][0]["lr"]  # same per-model learning rates
    assert same_lr["epochs"][0]["lr"][0] == same_lr["epochs"][0]["lr"][1] > grafted["epochs"][0]["lr"][0]

    paired = report["paired"]
    expected = {(against, part, metric) for against in ("nograft", "nograft_ensemble", "single")
                for part in ("model0", "mean", "best_of_k") for metric in ("mAP", "rank1")}  # fmt: skip
    assert {(e["against"], e["report"], e["metric"]) for e in paired} == expected
    for entry in paired:
        low, high = entry["ci95"]
        assert low <= entry["difference"] <= high
        if entry["report"] == "model0" and entry["metric"] == "mAP":
            ours, theirs = rows["graft"]["model0"]["per_seed"], rows[entry["against"]]["model0"]["per_seed"]
            assert entry["difference"] == pytest.approx((ours[0] - theirs[0] + ours[1] - theirs[1]) / 2)
    table = (output / "comparison.md").read_text()
    assert "| nograft_ensemble | 2 |" in table and "95% interval" in table
    with Image.open(output / "comparison.png") as picture:
        assert picture.format == "PNG"
    assert first.stdout.count("] trained") == 2 * 4  # single, nograft, graft, graft_same_lr per seed

    stamps = {path: path.stat().st_mtime_ns for path in output.glob("*/checkpoint.pt")}
    second = compare(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("] reused") == 8 and "] trained" not in second.stdout
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert json.loads((output / "comparison.json").read_text()) == report
    # nothing is scored again: 4 runs' models plus the ensemble and the average, per seed
    assert second.stdout.count(" scores reused from ") == 2 * 6

    # A missing or damaged scores file is scored again, to the same numbers.
    (output / "seed0-k2-graft" / "compare-scores-models.npz").unlink()
    damaged = output / "seed1-k2-nograft" / "compare-scores-nograft_average.npz"
    damaged.write_bytes(b"not a scores file")
    third = compare(*args, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert third.stdout.count(" scores reused from ") == 2 * 6 - 2
    assert "[seed0-k2-graft] models scores" not in third.stdout
    assert "[seed1-k2-nograft] nograft_average scores" not in third.stdout
    assert json.loads((output / "comparison.json").read_text()) == report
    assert (output / "seed0-k2-graft" / "compare-scores-models.npz").is_file()
    assert damaged.read_bytes() != b"not a scores file"

    # Seed blocks do not overlap: model k of replicate s has seed 1000 s + k.
    seeds = {name: torch.load(output / name / "checkpoint.pt", weights_only=True)["config"]["seed"]
             for name in ("seed0-k2-graft", "seed1-k2-graft", "seed1-k1-single")}  # fmt: skip
    assert seeds == {"seed0-k2-graft": 0, "seed1-k2-graft": 1000, "seed1-k1-single": 1000}

    # A changed recipe never reuses the runs of another one: one line naming the field.
    changed = tmp_path / "changed.yaml"
    changed.write_text(recipe.read_text().replace("lr: 0.01", "lr: 0.02"))
    fourth = compare("--config", changed, "--seeds", "1", "--models", "2", "--output", output, cwd=tmp_path)
    assert fourth.returncode == 2 and "Traceback" not in fourth.stderr
    (line,) = fourth.stderr.strip().splitlines()
    assert "holds a run of another recipe: lr 0.01 (now 0.02)" in line and "another --output" in line
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


def test_bad_arguments_are_one_line(recipe, tmp_path):
    result = compare("--config", recipe, "--seeds", "0", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == (
        "compare: --seeds must be at least 1 and every --models value at least 2 (K = 1 is `single`)"
    )
    missing = compare("--config", tmp_path / "none.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "config file not found" in missing.stderr
