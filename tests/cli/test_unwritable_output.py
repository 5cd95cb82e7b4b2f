"""An --output that cannot be written: one line and exit code 2, before any work. As root a
read-only mode lets writes through, so the read-only case uses /sys, a read-only file system."""

from pathlib import Path

import pytest

from reidgraft.cli import analyze, evaluate, train
from reidgraft.files import check_writable

READ_ONLY = Path("/sys/reidgraft-test-run")
needs_read_only = pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux's read-only /sys")


@needs_read_only
def test_the_check_tells_a_read_only_folder_and_a_file_in_the_way(tmp_path):
    with pytest.raises(ValueError, match="--output /sys/reidgraft-test-run cannot be written"):
        check_writable(READ_ONLY)
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(ValueError, match="a-file is a file, not a folder"):
        check_writable(tmp_path / "a-file" / "run")
    check_writable(tmp_path / "new" / "run")  # a folder still to be made, under a writable one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # probing leaves nothing


@needs_read_only
def test_every_command_refuses_it_before_working(tiny_run, tmp_path, capsys):
    commands = [
        (train.main, ["--output", str(READ_ONLY), "--root", str(tmp_path / "data"), "--device", "cpu"]),
        (evaluate.main, [str(tiny_run), "--output", str(READ_ONLY)]),
        (analyze.main, [str(tiny_run), "--output", str(READ_ONLY)]),
    ]
    for main, argv in commands:
        assert main(argv) == 2, argv
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "cannot be written" in lines[0], (argv, lines)
        assert "features" not in lines[0]
    assert not (tmp_path / "data").exists()  # train stopped before generating any data


def test_a_disk_that_fills_up_during_training_is_one_line_naming_the_checkpoint(tmp_path, small_disk):
    import subprocess
    import sys

    disk = small_disk(4)  # room for the config, not for a checkpoint of two MobileNets
    result = subprocess.run(
        [sys.executable, "-m", "reidgraft.cli.train", "--dataset", "synthetic",
         "--root", str(tmp_path / "data"), "--models", "2", "--epochs", "1",
         "--batch-size", "8", "--height", "32", "--width", "16",
         "--val-ids", "0", "--device", "cpu", "--output", str(disk / "run")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"train: no space left on the device holding {disk / 'run' / 'checkpoint.pt'}; "
        "nothing half-written was kept: free space there (or choose another folder) and run again"
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert not [path for path in (disk / "run").rglob("*.tmp")]
