"""A zero-byte or text checkpoint, through every command that reads one: one line naming it."""

import pytest

from reidgraft.cli import analyze, demo, evaluate, train
from reidgraft.data.datasets import synthetic_splits

TINY = dict(train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)


@pytest.fixture(params=["empty", "text"])
def broken_run(request, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"" if request.param == "empty" else b"hello, not a checkpoint\n")
    return run


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_every_reader_names_the_damaged_file(broken_run, tmp_path, capsys):
    expected = f"{broken_run / 'checkpoint.pt'} is not a reidgraft checkpoint or is damaged"
    root = tmp_path / "data"
    synthetic_splits(root, **TINY)
    tiny = [
        "--root",
        str(root),
        "--height",
        "32",
        "--width",
        "16",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--val-ids",
        "0",
    ]
    commands = [
        (train.main, ["--resume", str(broken_run)]),
        (
            train.main,
            [*tiny, "--teacher", str(broken_run / "checkpoint.pt"), "--output", str(tmp_path / "t")],
        ),
        (evaluate.main, [str(broken_run)]),
        (analyze.main, [str(broken_run)]),
        (demo.main, ["--checkpoint", str(broken_run)]),
    ]
    for main, argv in commands:
        assert main(argv) == 2, argv
        assert expected in one_line(capsys), argv
