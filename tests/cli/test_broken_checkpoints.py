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


EDITS = {
    "no arch": (
        lambda p: p["config"].pop("arch"),
        "is not a complete reidgraft checkpoint (its config names no arch)",
    ),
    "config not a mapping": (lambda p: p.update(config=[1]), "(its config is a list, not a mapping)"),
    "no models": (lambda p: p.update(models=[]), "(its models are not a list of weights)"),
    "num_classes text": (lambda p: p.update(num_classes="8"), "(num_classes 8 is not a count of classes)"),
    "wrong num_classes": (
        lambda p: p.update(num_classes=999),
        "model 0's weights do not fit a mobilenetv2_x1_0 with 999 classes (size mismatch for "
        "classifier.weight",
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_checkpoint_is_one_line_in_evaluate_and_export(tiny_run, tmp_path, capsys, edit):
    import shutil

    import torch

    from reidgraft.cli import export

    change, expected = EDITS[edit]
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    change(payload)
    torch.save(payload, run / "checkpoint.pt")
    assert evaluate.main([str(run), "--output", str(tmp_path / "eval")]) == 2
    assert expected in one_line(capsys)
    assert export.main([str(run), "--format", "onnx", "--output", str(tmp_path / "m.onnx")]) == 2
    assert expected in one_line(capsys)
    assert not (tmp_path / "eval").exists() and not (tmp_path / "m.onnx").exists()
