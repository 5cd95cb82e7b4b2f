"""Input sizes a backbone cannot take, and bf16 training where it would go wrong: one line and
exit code 2, before any data is read."""

import pytest

from reidgraft.cli import train
from reidgraft.device import cpu_has_bf16


def refused(tmp_path, capsys, *flags):
    root = tmp_path / "data"
    code = train.main(["--root", str(root), "--output", str(tmp_path / "run"), "--device", "cpu", *flags])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1, error
    assert not root.exists() and not (tmp_path / "run").exists()
    return error[0]


def test_a_height_below_half_the_backbones_stride_is_refused(tmp_path, capsys):
    error = refused(tmp_path, capsys, "--arch", "resnet50", "--height", "7")
    assert "height 7 is too small for resnet50" in error and "--height 16 or more" in error


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_bf16_training_on_one_pixel_wide_maps_is_refused(tmp_path, capsys):
    error = refused(
        tmp_path, capsys, "--arch", "resnet18", "--amp", "bf16", "--height", "32", "--width", "16"
    )
    assert "--amp bf16 cannot train resnet18 at 32x16" in error
    assert "use --height 40 --width 40 or more, or --amp none" in error
