"""tools/train.py as a user runs it: one readable line and a non-zero exit on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_FLAGS = [
    "--models", "2", "--epochs", "1", "--batch-size", "8", "--height", "32", "--width", "16",
    "--eval-batch-size", "32", "--device", "cpu", "--optimizer", "sgd", "--lr", "0.01", "--val-ids", "0",
]  # fmt: skip


def train(*args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A data root holding a tiny synthetic set (written where train.py will look for it)."""
    from reidgraft.data.datasets import synthetic_splits

    root = tmp_path_factory.mktemp("data")
    synthetic_splits(root, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)
    return root


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_market_data(tmp_path):
    result = train(
        "--dataset", "market1501", "--root", str(tmp_path / "data"), "--weights", "none", cwd=tmp_path
    )
    assert_one_line_error(result, "market1501/Market-1501-v15.09.15", "never downloads")
    assert not (tmp_path / "data").exists()


def test_unknown_names_list_the_valid_ones(tmp_path):
    assert_one_line_error(train("--dataset", "marke", cwd=tmp_path), "choose one of: market1501")
    result = train("--arch", "resnet5", "--root", str(tmp_path / "data"), cwd=tmp_path)
    assert_one_line_error(result, "unknown arch 'resnet5'; choose one of: resnet18")
    assert not (tmp_path / "data").exists()  # refused before any data was written


def test_run_resume_and_refusals(tiny_root, tmp_path):
    run_dir = tmp_path / "run"
    first = train("--root", str(tiny_root), "--output", str(run_dir), *TINY_FLAGS, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "mAP" in first.stdout and "rank1" in first.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [row["model"] for row in metrics["final"]] == [0, 1]

    again = train("--root", str(tiny_root), "--output", str(run_dir), *TINY_FLAGS, cwd=tmp_path)
    assert_one_line_error(again, "already holds a run", f"--resume {run_dir}")

    other_arch = train("--resume", str(run_dir), "--arch", "resnet50", cwd=tmp_path)
    assert_one_line_error(other_arch, "cannot resume", "arch 'resnet50'", "mobilenetv2_x1_0")
    other_k = train("--resume", str(run_dir), "--models", "4", cwd=tmp_path)
    assert_one_line_error(other_k, "models 4")
    other_lr = train("--resume", str(run_dir), "--lr", "0.5", cwd=tmp_path)
    assert_one_line_error(other_lr, "cannot change lr when resuming")

    resumed = train("--resume", str(run_dir), "--epochs", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]


def test_bad_flag_values(tmp_path):
    assert_one_line_error(train("--epochs", "0", cwd=tmp_path), "epochs must be at least 1")
    assert_one_line_error(train("--config", str(tmp_path / "x.yaml"), cwd=tmp_path), "config file not found")


def test_ctrl_c_keeps_the_last_complete_checkpoint(tiny_root, tmp_path):
    import signal
    import time

    import torch

    run_dir = tmp_path / "run"
    at = TINY_FLAGS.index("--epochs") + 1
    flags = [*TINY_FLAGS[:at], "200", *TINY_FLAGS[at + 1 :]]  # long enough to be interrupted
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tools" / "train.py"),
            "--root",
            str(tiny_root),
            "--output",
            str(run_dir),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # let it get into the next epoch
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted" in stderr and f"--resume {run_dir}" in stderr
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert 1 <= checkpoint["epoch"] < 200 and len(checkpoint["models"]) == 2
    assert not list(run_dir.glob(".*.tmp"))


def test_classification_names_and_missing_cifar(tmp_path):
    missing = train("--dataset", "cifar100", "--root", str(tmp_path / "data"), cwd=tmp_path)
    assert_one_line_error(
        missing, "cifar100 not found", "cifar-100-python lacks train, test, meta", "--download"
    )
    assert not (tmp_path / "data").exists()
    reid_arch = train("--dataset", "digits", "--arch", "resnet50", cwd=tmp_path)
    assert_one_line_error(reid_arch, "'resnet50' is a re-ID backbone; digits trains one of: resnet20")
    cifar_arch = train("--dataset", "synthetic", "--arch", "resnet56", cwd=tmp_path)
    assert_one_line_error(cifar_arch, "'resnet56' is a CIFAR classifier; re-ID datasets train torchreid")


@pytest.mark.slow
def test_digits_run_prints_top1_and_refuses_to_resume_as_reid(tmp_path):
    run_dir = tmp_path / "digits"
    flags = ["--epochs", "1", "--models", "2", "--batch-size", "64", "--device", "cpu"]
    result = train("--dataset", "digits", "--output", str(run_dir), *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "digits: 1347 train and 450 test images, 10 classes" in result.stdout
    assert "top1" in result.stdout and "best top1 (epoch, chosen on the test set)" in result.stdout
    assert_one_line_error(
        train("--resume", str(run_dir), "--dataset", "synthetic", cwd=tmp_path),
        "cannot resume", "dataset 'synthetic'", "'digits'",
    )  # fmt: skip
    evaluate = subprocess.run(
        [sys.executable, str(REPO / "tools" / "evaluate.py"), str(run_dir)], capture_output=True, text=True
    )
    assert evaluate.returncode == 2 and "is a classification run" in evaluate.stderr


def test_the_strong_recipe_flags_train_two_grafted_models(tiny_root, tmp_path):
    """--loss softmax triplet --sampler identity --bnneck --warmup-epochs 1 from the command line;
    every identity of the tiny set has 6 images, fewer than --num-instances 8: said once."""
    result = train(
        "--root", str(tiny_root), *TINY_FLAGS, "--epochs", "2", "--weights", "none", "--loss", "softmax",
        "triplet", "--sampler", "identity", "--num-instances", "8", "--batch-size", "16", "--bnneck",
        "--warmup-epochs", "1", "--output", str(tmp_path / "run"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "drawn with replacement" in line]
    assert notes == ["note: 8 of 8 training identities have fewer than 8 images; their batches repeat "
                     "images (drawn with replacement)"]  # fmt: skip
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["final"]) == 2 and len(metrics["epochs"][0]["alphas"]) == 2
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "bnneck: true" in saved and "- triplet" in saved


def test_triplet_with_random_batches_is_one_line(tiny_root, tmp_path):
    result = train("--root", str(tiny_root), *TINY_FLAGS, "--loss", "triplet", cwd=tmp_path)
    assert_one_line_error(result, "loss triplet needs --sampler identity")


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--population", "dml", "--models", "1"], ["population dml needs at least 2 models"]),
        (["--population", "papa", "--papa-rate", "0"], ["papa_rate must lie in (0, 1]"]),
        (["--population", "papa", "--papa-every", "0"], ["papa_every must be at least 1"]),
        (["--ema", "1.5"], ["ema must be a decay in [0, 1)"]),
        (["--population", "graft", "--dml-weight", "2"], ["dml_weight is a setting of --population dml"]),
        (["--no-graft", "--criterion", "l1"], ["criterion is a setting of --population graft"]),
    ],
)
def test_bad_population_settings_exit_2_before_any_data_is_read(tmp_path, flags, fragments):
    # no data anywhere under --root: the setting must be refused before it is looked for
    result = train("--dataset", "market1501", "--root", str(tmp_path / "absent"), *flags, cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "runs").exists()


def test_off_a_terminal_progress_is_timed_lines_and_the_recipe_is_said(tiny_root, tmp_path):
    """Under nohup, SLURM or docker logs (stdout and stderr are pipes) a bar says nothing: the
    epoch and the evaluation's extraction log lines with their rate and the time left."""
    import os

    environment = {**os.environ, "REIDGRAFT_LOG_SECONDS": "0.001"}
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), "--root", str(tiny_root), "--output",
         str(tmp_path / "run"), *TINY_FLAGS, "--eval-batch-size", "4"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env=environment,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    epoch = [line for line in result.stderr.splitlines() if line.startswith("epoch 1/1: ")]
    assert epoch and "images/s" in epoch[0] and "left" in epoch[0], result.stderr
    assert epoch[-1].startswith("epoch 1/1: ") and " batches done in " in epoch[-1]
    assert any(line.startswith("features gallery: ") for line in result.stderr.splitlines())
    assert "\r" not in result.stderr  # no bar
    lines = result.stdout.splitlines()
    assert lines[0] == "recipe: synthetic_quick (shipped: reidgraft/recipes/synthetic_quick.yaml)"
    assert lines[1].startswith("settings from flags: ") and "models=2" in lines[1] and "height=32" in lines[1]
    assert lines[2].startswith("settings from the recipe: ")

    quiet = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), "--root", str(tiny_root), "--output",
         str(tmp_path / "quiet"), *TINY_FLAGS],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**environment, "REIDGRAFT_LOG_SECONDS": "0"},
    )  # fmt: skip
    assert quiet.returncode == 0 and "epoch 1/1: " not in quiet.stderr, quiet.stderr


def test_print_config_says_the_recipe_and_trains_nothing(tmp_path):
    result = train(
        "--dataset", "folder", "--arch", "osnet_x1_0", "--epochs", "3", "--print-config", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "recipe: folder_resnet50 (shipped: reidgraft/recipes/folder_resnet50.yaml)"
    assert lines[1].startswith(
        "note: no folder recipe is shipped for osnet_x1_0: its settings are resnet50's"
    )
    assert "epochs=3" in lines[2] and lines[2].startswith("settings from flags: ")
    assert "\nepochs: 3\n" in result.stdout and "\narch: osnet_x1_0\n" in result.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written, no data read
    mobile = train("--dataset", "folder", "--arch", "mobilenetv2_x1_0", "--print-config", cwd=tmp_path)
    assert mobile.stdout.splitlines()[0] == (
        "recipe: folder_mobilenetv2 (shipped: reidgraft/recipes/folder_mobilenetv2.yaml)"
    )
    assert "note:" not in mobile.stdout
