"""`torchrun ... tools/train.py --distributed` (gloo on 127.0.0.1) against the in-process ring."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
FLAGS = [
    "--deterministic", "--epochs", "2", "--batch-size", "8", "--height", "32", "--width", "16",
    "--eval-batch-size", "32", "--device", "cpu", "--optimizer", "sgd", "--lr", "0.01", "--val-ids", "0",
]  # fmt: skip


def one_thread():
    # One thread per process on both sides, so both do the same arithmetic in the same order.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run(command, cwd):
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=one_thread(), timeout=900)


def torchrun_command(*args, processes=2):
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
    ]
    return [*launcher, str(REPO / "tools" / "train.py"), "--distributed", *map(str, args)]


def torchrun(*args, cwd, processes=2):
    return run(torchrun_command(*args, processes=processes), cwd)


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
    for mine, reference in zip(ours["epochs"][:-1], theirs["epochs"][:-1], strict=True):
        for alphas, expected in zip(mine["alphas"], reference["alphas"], strict=True):
            assert alphas == pytest.approx(expected, abs=1e-9)
        assert mine["ring_exchange"]["bytes"] > 0 and mine["ring_exchange"]["seconds"] >= 0
    # no graft after the last epoch (the authors' order)
    assert ours["epochs"][-1]["alphas"] is theirs["epochs"][-1]["alphas"] is None
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


def worker_pid(rank: int, run_dir: Path) -> int:
    """The pid of the torchrun worker with this RANK training into run_dir (read from /proc)."""
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            environment = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if str(run_dir).encode() in command and f"RANK={rank}".encode() in environment:
            return int(entry.name)
    raise AssertionError(f"no worker of rank {rank} for {run_dir}")


def has_exited(pid: int) -> bool:
    """Gone, or a zombie that torchrun has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_a_hung_rank_stops_the_run_with_one_line_and_leaves_loadable_checkpoints(root, tmp_path):
    from reidgraft.engine import load_checkpoint

    run_dir, timeout = tmp_path / "dist", 10
    command = torchrun_command(
        "--root", root, "--output", run_dir, *FLAGS, "--epochs", "6", "--ring-timeout", timeout
    )
    log = (tmp_path / "stderr.txt").open("w")
    launcher = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=log, cwd=tmp_path, env=one_thread()
    )
    hung = None
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "rank1" / "checkpoint.pt").exists():  # rank 1 finished epoch 1
            assert launcher.poll() is None and time.monotonic() < deadline, "the run ended before epoch 1"
            time.sleep(0.2)
        waiting, hung = worker_pid(0, run_dir), worker_pid(1, run_dir)
        os.kill(hung, signal.SIGSTOP)  # alive but answering nothing, as a deadlocked or swapped-out rank
        stopped_at = time.monotonic()
        while "did not complete" not in (tmp_path / "stderr.txt").read_text():
            assert time.monotonic() - stopped_at < 120, "rank 0 still waits on the hung rank"
            time.sleep(0.2)
        waited = time.monotonic() - stopped_at
        while not has_exited(waiting):  # rank 0 leaves by itself, not waiting on its hung peer
            assert time.monotonic() - stopped_at < waited + 20, "rank 0 printed its error but did not exit"
            time.sleep(0.2)
    finally:
        if hung is not None and not has_exited(hung):
            os.kill(hung, signal.SIGKILL)  # torchrun would, after a 30 s grace period
        returncode = launcher.wait(timeout=120)
        log.close()

    stderr = (tmp_path / "stderr.txt").read_text()
    error_lines = [line for line in stderr.splitlines() if line.startswith("train: rank 0:")]
    assert len(error_lines) == 1, stderr[-3000:]
    assert f"did not complete within {timeout} s" in error_lines[0]
    assert "Traceback" not in stderr.split(error_lines[0])[0][-2000:]  # rank 0 printed no traceback
    assert returncode != 0 and "exitcode: 2" in stderr  # torchrun reports rank 0's own exit status
    # rank 0 gave up one timeout after its own epoch ended: well within the timeout plus an epoch.
    assert waited < timeout + 60

    # The last complete checkpoints still load, as one run of both models at the same epoch.
    epochs = [load_checkpoint(run_dir / f"rank{k}" / "checkpoint.pt")["epoch"] for k in range(2)]
    assert epochs[0] == epochs[1] >= 1
    merged = load_checkpoint(run_dir)
    assert len(merged["models"]) == 2 and merged["epoch"] == epochs[0]
