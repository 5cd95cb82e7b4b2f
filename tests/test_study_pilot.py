"""The converged study's pilot decisions (studies/converged/pilot_decide.py) follow the plan's
fixed rules on validation scores, and never on test scores."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "studies" / "converged" / "pilot_decide.py"
spec = importlib.util.spec_from_file_location("pilot_decide", SCRIPT)
pilot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pilot)


def write_run(runs, epochs, rate, seed, validation, test=0.99):
    folder = runs / f"e{epochs}-lr{rate}-s{seed}"
    folder.mkdir(parents=True)
    last = {
        "epoch": epochs,
        "val_metrics": [{"model": 0, "mAP": validation - 0.01}, {"model": 1, "mAP": validation + 0.01}],
        "metrics": [{"model": 0, "mAP": test}, {"model": 1, "mAP": test}],  # (never read)
    }
    (folder / "metrics.json").write_text(json.dumps({"epochs": [last], "final": [{"mAP": test}]}))


def step_one(runs, by_epochs):
    for epochs, values in by_epochs.items():
        for seed, value in zip(pilot.SEEDS, values, strict=True):
            write_run(runs, epochs, pilot.BASE_RATE, seed, value)


def test_e_is_the_smallest_whose_next_gains_under_a_point(tmp_path):
    step_one(tmp_path, {20: [0.40, 0.41, 0.42], 40: [0.42, 0.43, 0.44], 60: [0.425, 0.435, 0.445]})
    assert pilot.choose_epochs(tmp_path, out=lambda *_: None) == 40  # +2 points, then +0.5


def test_e_is_60_when_every_step_gains_a_point(tmp_path):
    step_one(tmp_path, {20: [0.40] * 3, 40: [0.42] * 3, 60: [0.44] * 3})
    assert pilot.choose_epochs(tmp_path, out=lambda *_: None) == 60


def test_an_incomplete_step_decides_nothing(tmp_path):
    step_one(tmp_path, {20: [0.40] * 3, 40: [0.42] * 3})
    assert pilot.choose_epochs(tmp_path, out=lambda *_: None) is None
    assert pilot.main([str(tmp_path), "--epochs"]) == 1


@pytest.mark.parametrize(("best", "chosen"), [(0.4029, "3e-4"), (0.4040, "6e-4")])
def test_the_base_rate_is_kept_within_0_3_points_of_the_best(tmp_path, best, chosen):
    for seed in pilot.SEEDS:
        write_run(tmp_path, 40, "3e-4", seed, 0.40)
        write_run(tmp_path, 40, "1.5e-4", seed, 0.39)
        write_run(tmp_path, 40, "6e-4", seed, best)
    assert pilot.choose_rate(tmp_path, 40, out=lambda *_: None) == chosen
