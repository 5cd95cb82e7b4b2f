"""One policy for a user's mistake in every command (`cli/entry.py`): one line `COMMAND: what`,
exit 2, or 1 for a fault of the machine; a closed stdout ends a command quietly."""

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from reidgraft.cli.entry import report_error
from reidgraft.files import DiskFull

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "error, status, line",
    [
        (ValueError("epochs must be at least 1\nmore detail"), 2, "train: epochs must be at least 1"),
        (
            PermissionError(errno.EACCES, "Permission denied", "runs/x"),
            2,
            "train: [Errno 13] Permission denied: 'runs/x'",
        ),
        (OSError(errno.EMFILE, "Too many open files"), 1, "train: [Errno 24] Too many open files"),
        (
            DiskFull("runs/x/checkpoint.pt"),
            1,
            "train: no space left on the device holding runs/x/checkpoint.pt",
        ),
        (ValueError(""), 2, "train: ValueError"),
    ],
)
def test_a_reported_error_is_one_line_and_its_status_says_whose_fault(capsys, error, status, line):
    assert report_error("train", error) == status
    printed = capsys.readouterr().err
    assert printed.startswith(line) and printed.count("\n") == 1


def test_a_broken_pipe_is_no_users_mistake():
    with pytest.raises(BrokenPipeError):
        report_error("train", BrokenPipeError(errno.EPIPE, "Broken pipe"))


def test_a_closed_stdout_ends_a_command_quietly():
    command = [sys.executable, str(REPO / "tools" / "train.py"), "--print-config"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader went away (`| head -0`) before a line was written
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141 and stderr == ""
