"""Hardware a run asks for and this machine lacks: one line and exit code 2, before any data."""

import pytest
import torch

from reidgraft.cli import train

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--device", "cuda"], "device 'cuda' asked for, but torch sees no CUDA device; use --device cpu"),
        (["--devices", "0,1"], "--devices 0,1 names GPUs, but torch sees no CUDA device"),
        (["--amp", "fp16"], "--amp fp16 needs a CUDA GPU"),
        (["--devices", "0,x"], "devices must be GPU numbers separated by commas, like 0,1,2,3"),
    ],
)
def test_missing_hardware_is_one_line_before_any_data(tmp_path, capsys, flags, message):
    root = tmp_path / "data"
    code = train.main(["--root", str(root), "--output", str(tmp_path / "run"), *flags])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and message in error[0], error
    assert not root.exists() and not (tmp_path / "run").exists()
