"""One signal policy for every command: Ctrl-C (SIGINT) exits 130 and SIGTERM (docker stop,
systemd, timeout) 143, each with one line and no traceback, and no temporary file left."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def handles_sigterm(pid: int) -> bool:
    """Whether process `pid` has a handler for SIGTERM (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


def stopped(command: list[str], sig: int, *, after: float = 0.0, when: str | None = None, cwd=None):
    """Run `command`, send `sig` `after` seconds in (or once `when` appears in its stdout)."""
    process = subprocess.Popen(
        [sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    if when is not None:
        for line in process.stdout:
            if when in line:
                break
    else:  # once the command's own SIGTERM handler is installed (it then imports its module)
        deadline = time.monotonic() + 60
        while not handles_sigterm(process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(after)
    process.send_signal(sig)
    out, err = process.communicate(timeout=300)
    return process.returncode, err


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    from reidgraft.data.datasets import synthetic_splits

    root = tmp_path_factory.mktemp("data")
    synthetic_splits(root, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)
    path = root / "tiny.yaml"
    path.write_text(
        f"dataset: synthetic\nroot: {root}\narch: mobilenetv2_x1_0\nheight: 32\nwidth: 16\nmodels: 2\n"
        "batch_size: 8\noptimizer: sgd\nlr: 0.01\neval_batch_size: 32\ndevice: cpu\nweights: none\n"
    )
    return path


def assert_one_line(err: str, prefix: str, word: str):
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{prefix}: {word}"), err


def test_sigterm_in_train_saves_the_last_epoch_and_exits_143(recipe, tmp_path):
    output = tmp_path / "run"
    command = [
        str(REPO / "tools" / "train.py"),
        "--config",
        str(recipe),
        "--epochs",
        "30",
        "--output",
        str(output),
    ]
    code, err = stopped(command, signal.SIGTERM, when="epoch 2/30")
    assert code == 143
    assert_one_line(err, "train", "terminated")
    assert "the last complete epoch is saved" in err
    assert not list(output.rglob("*.tmp"))


@pytest.mark.parametrize(
    "sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_evaluate_and_export_stop_with_one_line(tiny_run, tmp_path, sig, code, word):
    evaluate = [str(REPO / "tools" / "evaluate.py"), str(tiny_run), "--output", str(tmp_path / "eval")]
    got, err = stopped(evaluate, sig, after=0.2)
    assert got == code and (tmp_path / "eval" / "evaluation.json").exists() is False
    assert_one_line(err, "evaluate", word)
    export = [
        str(REPO / "tools" / "export.py"),
        str(tiny_run),
        "--format",
        "onnx",
        "--output",
        str(tmp_path / "out" / "m.onnx"),
    ]
    got, err = stopped(export, sig, after=0.2)
    assert got == code
    assert_one_line(err, "export", word)
    assert not list((tmp_path / "out").glob("*.tmp")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize(
    "sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_compare_stops_with_one_line(recipe, tmp_path, sig, code, word):
    output = tmp_path / "comparison"
    long = tmp_path / "long.yaml"
    long.write_text(recipe.read_text() + "epochs: 30\n")
    compare = [
        str(REPO / "tools" / "compare.py"), "--config", str(long), "--seeds", "2",
        "--models", "2", "--output", str(output),
    ]  # fmt: skip
    got, err = stopped(compare, sig, after=3.0)
    assert got == code, err
    assert_one_line(err, "compare", word)
    assert not list(output.rglob("*.tmp")) if output.exists() else True
    assert not (output / "comparison.md").exists()
