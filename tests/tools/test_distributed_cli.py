"""`torchrun ... tools/train.py --distributed` (gloo on 127.0.0.1) against the in-process ring."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
FLAGS = [
    "--deterministic", "--epochs", "2", "--batch-size", "8", "--height", "32", "--width", "16",
    "--eval-batch-size", "32", "--device", "cpu", "--optimizer", "sgd", "--lr", "0.01",
]  # fmt: skip


def run(command, cwd):
    # One thread per process on both sides, so both do the same arithmetic in the same order.
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=environment, timeout=900)


def torchrun(*args, cwd, processes=2):
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
    ]
    return run([*launcher, str(REPO / "tools" / "train.py"), "--distributed", *map(str, args)], cwd)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from reidgraft.data.datasets import synthetic_splits

    folder = tmp_path_factory.mktemp("data")
    synthetic_splits(folder, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)
    return folder


def test_two_processes_end_as_the_in_process_ring_and_resume(root, tmp_path):
    distributed = torchrun("--root", root, "--output", tmp_path / "dist", *FLAGS, cwd=tmp_path)
    assert distributed.returncode == 0, distributed.stderr[-3000:]
    local = run(
        [sys.executable, str(REPO / "tools" / "train.py"), "--models", "2", "--root", str(root),
         "--output", str(tmp_path / "local"), *FLAGS],
        tmp_path,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]

    ours = json.loads((tmp_path / "dist" / "metrics.json").read_text())
    theirs = json.loads((tmp_path / "local" / "metrics.json").read_text())
    assert [row["model"] for row in ours["final"]] == [0, 1]
    for mine, reference in zip(ours["final"], theirs["final"], strict=True):
        assert mine == pytest.approx(reference, abs=1e-6)
    for mine, reference in zip(ours["epochs"], theirs["epochs"], strict=True):
        for key in ("loss", "lr", "network_entropy"):
            assert mine[key] == pytest.approx(reference[key], abs=1e-6), key
        for alphas, expected in zip(mine["alphas"], reference["alphas"], strict=True):
            assert alphas == pytest.approx(expected, abs=1e-9)
        assert mine["ring_exchange"]["bytes"] > 0 and mine["ring_exchange"]["seconds"] >= 0
    in_process = torch.load(tmp_path / "local" / "checkpoint.pt", weights_only=True)["models"]
    for k in range(2):
        own = torch.load(tmp_path / "dist" / f"rank{k}" / "checkpoint.pt", weights_only=True)
        assert own["model_ids"] == [k] and own["epoch"] == 2
        for key, tensor in own["models"][0].items():
            torch.testing.assert_close(tensor, in_process[k][key], rtol=0, atol=1e-5)

    # The run folder reads as one run of two models: evaluate reproduces rank 0's metrics.json.
    evaluated = run(
        [
            sys.executable,
            str(REPO / "tools" / "evaluate.py"),
            str(tmp_path / "dist"),
            "--output",
            str(tmp_path),
        ],
        tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    rows = json.loads((tmp_path / "evaluation.json").read_text())["models"]
    for row, final in zip(rows, ours["final"], strict=True):
        assert row == pytest.approx(final, abs=1e-9)
    in_process_resume = run(
        [
            sys.executable,
            str(REPO / "tools" / "train.py"),
            "--resume",
            str(tmp_path / "dist"),
            "--epochs",
            "3",
        ],
        tmp_path,
    )
    assert in_process_resume.returncode == 2 and "resume it under torchrun with --distributed" in (
        in_process_resume.stderr
    )

    resumed = torchrun("--resume", tmp_path / "dist", "--epochs", "3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout and "after epoch 2" in resumed.stdout
    epochs = json.loads((tmp_path / "dist" / "metrics.json").read_text())["epochs"]
    assert [record["epoch"] for record in epochs] == [1, 2, 3]


def test_distributed_outside_torchrun_is_one_line(tmp_path):
    result = run([sys.executable, str(REPO / "tools" / "train.py"), "--distributed"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "train: --distributed runs under torchrun: "
        "torchrun --nproc_per_node K tools/train.py ... --distributed"
    )
