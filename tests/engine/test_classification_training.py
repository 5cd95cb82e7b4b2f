"""The classification track through the same trainer: digits runs on the CPU, grafting+ included."""

import json

import pytest

from reidgraft.config import build_config
from reidgraft.data import load_classification_dataset
from reidgraft.engine import Trainer, load_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    return load_classification_dataset("digits", "unused")


def digits_config(**overrides):
    values = dict(
        dataset="digits", arch="resnet20", models=2, epochs=3, batch_size=64, optimizer="sgd", lr=0.1,
        scheduler="cosine", label_smooth=0.0, transforms=["random_crop"], eval_every=1,
        eval_batch_size=450, device="cpu",
    )  # fmt: skip
    values.update(overrides)
    return build_config(**values)


@pytest.fixture(scope="module")
def grafted_run(digits, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("digits")
    trainer = Trainer(digits_config(), digits, run_dir, log=lambda line: None)
    trainer.fit()
    return trainer, run_dir


def test_two_grafted_resnet20s_learn_digits_well_above_chance(grafted_run):
    trainer, run_dir = grafted_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"] == "classification"
    assert [row["model"] for row in metrics["final"]] == [0, 1]
    for row in metrics["final"]:
        assert set(row) == {"model", "top1", "top5"}
        assert row["top1"] > 0.6  # chance is 0.1
        assert row["top1"] <= row["top5"] <= 1.0
    assert metrics["final"] == metrics["epochs"][-1]["metrics"]
    for k, best in enumerate(metrics["best"]):
        evaluated = [epoch["metrics"][k]["top1"] for epoch in metrics["epochs"]]
        assert best["top1"] == max(evaluated) and best["chosen_on"] == "test set"
        assert metrics["epochs"][best["epoch"] - 1]["metrics"][k]["top1"] == best["top1"]
    # the ring grafted at every epoch end but the last (the authors' order)
    assert (
        all(epoch["alphas"] for epoch in metrics["epochs"][:-1]) and metrics["epochs"][-1]["alphas"] is None
    )
    assert load_checkpoint(run_dir)["task"] == "classification"


def test_grafting_plus_with_a_small_teacher(grafted_run, digits, tmp_path):
    _, teacher_run = grafted_run
    students = dict(epochs=5, teacher=[f"{teacher_run / 'checkpoint.pt'}:1"], kd_weight=1.0, kd_tau=2.0)
    taught = Trainer(digits_config(**students), digits, tmp_path / "taught", log=lambda line: None)
    # The tau^2-weighted soft cross-entropy has the teacher's entropy as its floor (about 9 of a
    # loss near 11 here), so students learn more slowly than the teacher did: after 3 epochs they
    # stood at 0.24-0.36 top-1 depending on the CPU (fp32 or bf16), after 5 at 0.96 (chance 0.1).
    assert all(row["top1"] > 0.6 for row in taught.fit())
    losses = [epoch["loss"] for epoch in taught.history]
    assert all(last < first for first, last in zip(losses[0], losses[-1], strict=True))
    # Same seeds, data and learning rates: only the distillation term differs.
    steps = dict(epoch=0, max_steps=4)
    with_teacher = Trainer(digits_config(**students), digits, tmp_path / "a", log=lambda line: None)
    alone = Trainer(digits_config(epochs=3), digits, tmp_path / "b", log=lambda line: None)
    assert with_teacher.train_epoch(**steps)["loss"] != alone.train_epoch(**steps)["loss"]


def test_a_teacher_from_another_task_is_refused(tiny_run, digits, tmp_path):
    config = digits_config(epochs=1, teacher=[str(tiny_run / "checkpoint.pt")])
    with pytest.raises(ValueError, match="was trained on synthetic with .* this run has digits with 10"):
        Trainer(config, digits, tmp_path, log=lambda line: None)


def test_validation_images_per_class_choose_the_best_epoch(digits, tmp_path):
    trainer = Trainer(digits_config(epochs=2, val_ids=10), digits, tmp_path, log=lambda line: None)
    trainer.fit()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(trainer.task.data.train_labels) == len(digits.train_labels) - 10 * digits.num_classes
    assert all(0.0 <= row["top1"] <= 1.0 for epoch in metrics["epochs"] for row in epoch["val_metrics"])
    assert {best["chosen_on"] for best in metrics["best"]} == {"validation"}
    assert metrics["report"]["best_of_k"]["chosen_on"] == "validation"
