"""The package as a user installs it: a wheel, installed without -e, outside the checkout."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_installed_without_e_trains_the_quick_recipe_outside_the_checkout(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path / "wheel"),
            str(REPOSITORY),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("reidgraft-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "reidgraft/recipes/synthetic_quick.yaml" in names
    assert "reidgraft/recipes/base/reid-papers.yaml" in names
    site = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]

    # A small synthetic set already there is used whatever its size (the recipe's default is larger).
    from reidgraft.data.datasets import synthetic_splits

    synthetic_splits(
        tmp_path / "data", train_ids=6, test_ids=4, images_per_id=4, distractors=2, height=32, width=16
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    environment = {**os.environ, "PYTHONPATH": str(site), "REIDGRAFT_OFFLINE": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import reidgraft, sys; print(reidgraft.__file__)"],
        cwd=outside, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    trained = subprocess.run(
        [
            str(site / "bin" / "reidgraft-train"), "--root", str(tmp_path / "data"), "--models", "2",
            "--epochs", "1", "--batch-size", "8", "--val-ids", "0", "--device", "cpu",
            "--output", str(tmp_path / "run"),
        ],
        cwd=outside, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "optimizer: amsgrad" in config and "scheduler: cosine" in config  # the quick recipe's
    assert (tmp_path / "run" / "metrics.json").is_file()
