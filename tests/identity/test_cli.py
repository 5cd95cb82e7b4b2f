"""reidgraft-identity as a user runs it: calibrate writes the run's threshold, reentry its table;
bad input is one line and exit 2."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def identity(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "identity.py"), *map(str, args)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_calibrate_then_reentry(val_run, tmp_path):
    calibrated = identity("calibrate", val_run, "--target", "0.25")
    assert calibrated.returncode == 0, calibrated.stderr
    saved = json.loads((val_run / "identity-threshold.json").read_text())
    assert saved["target"] == 0.25 and f"{saved['threshold']:.4f}" in calibrated.stdout
    (val_run / "identity-threshold.json").unlink()
    output = tmp_path / "reentry"
    measured = identity("reentry", val_run, "--target", "0.25", "--seeds", "2", "--output", output)
    assert measured.returncode == 0, measured.stderr
    result = json.loads((output / "reentry.json").read_text())
    assert [row["model"] for row in result["rows"]] == [
        "trained",
        "trained",
        "ImageNet only",
        "ImageNet only",
        "no re-ID",
    ]
    assert result["rows"][0]["people"] == 6 and result["rows"][1]["people"] == 4  # all, and the calibration's
    assert (output / "reentry.png").stat().st_size > 0 and "| no re-ID | 6 |" in measured.stdout


def test_bad_input_is_one_line(tiny_run, tmp_path):
    for args, message in (
        (("calibrate", tiny_run, "--target", "2"), "give a false-merge rate between 0 and 1"),
        (("calibrate", tiny_run), "held out no validation identities"),
        (("calibrate", tmp_path / "nowhere"), "nowhere"),
        (("reentry", tiny_run, "--seeds", "0"), "--seeds 0: give 1 or more arrival orders"),
    ):
        result = identity(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert message in result.stderr.strip().splitlines()[-1]
    assert not (tiny_run / "identity-threshold.json").exists()
