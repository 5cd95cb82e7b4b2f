"""Tiny end-to-end runs of the trainer on a small synthetic dataset (real torchreid paths)."""

import json

import pytest
import torch

from reidgraft.config import ConfigError, build_config
from reidgraft.data.datasets import synthetic_splits
from reidgraft.engine import METRIC_KEYS, Trainer, load_checkpoint
from reidgraft.grafting import ring_learning_rates, scored_keys

TINY = dict(train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return synthetic_splits(tmp_path_factory.mktemp("data"), **TINY)


def tiny_config(**overrides):
    values = dict(
        dataset="synthetic",
        arch="mobilenetv2_x1_0",
        models=2,
        epochs=2,
        batch_size=8,
        height=32,
        width=16,
        lr=0.01,
        optimizer="sgd",
        eval_batch_size=32,
        deterministic=True,
        device="cpu",
    )
    values.update(overrides)
    return build_config(**values)


def run(splits, run_dir, **overrides):
    trainer = Trainer(tiny_config(**overrides), splits, run_dir, log=lambda line: None)
    return trainer, trainer.fit()


def test_tiny_grafted_run_writes_metrics_checkpoint_and_logs(splits, tmp_path):
    trainer, final = run(splits, tmp_path, eval_every=1)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][-1]["alphas"] is None  # no graft after the last epoch
    for epoch in metrics["epochs"]:
        assert len(epoch["loss"]) == 2 and all(loss > 0 for loss in epoch["loss"])
    for epoch in metrics["epochs"][:-1]:
        assert len(epoch["alphas"]) == 2
        assert list(epoch["alphas"][0]) == scored_keys(trainer.members[0].model.state_dict())
        assert all(0.3 <= a <= 0.7 for a in epoch["alphas"][1].values())
        assert [m["model"] for m in epoch["metrics"]] == [0, 1]
    assert metrics["final"] == final
    assert [row["model"] for row in final] == [0, 1]
    for row in final:
        assert set(row) == {"model", *METRIC_KEYS}
        assert all(0.0 <= row[key] <= 1.0 for key in METRIC_KEYS)
        assert row["rank1"] <= row["rank5"] <= row["rank10"]
    # The authors' order: evaluated, saved, then grafted, and no graft after the last epoch. A
    # K = 2 graft leaves both models with the same weights, so only this order tells them apart.
    assert final[0] != final[1]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and len(checkpoint["models"]) == 2
    for member, saved in zip(trainer.members, checkpoint["models"], strict=True):
        state = member.model.state_dict()
        assert all(torch.equal(state[key], saved[key]) for key in saved)
    assert trainer.evaluate() == final  # the saved weights are the evaluated ones
    assert (tmp_path / "config.yaml").is_file()
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert not list(tmp_path.glob(".*.tmp"))


def test_eval_after_graft_keeps_the_old_order(splits, tmp_path):
    trainer, final = run(splits, tmp_path, epochs=1, eval_after_graft=True)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["epochs"][0]["alphas"]) == 2  # grafted after the last epoch too
    a, b = (m.model.state_dict() for m in trainer.members)
    assert all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    assert final[0] == {**final[1], "model": 0}  # so K = 2 evaluates one model twice


def as_format_1(payload: dict) -> dict:
    """A checkpoint as reidgraft saved it before participants had state of their own (7a2db7e):
    `graft_pending` and the EMA copies as a list under `ema`."""
    old = {key: value for key, value in payload.items() if key not in ("participants", "exchange_pending")}
    ema = payload["participants"].get("ema", {}).get("copies", [])
    return {**old, "format": 1, "graft_pending": payload["exchange_pending"], "ema": ema}


@pytest.mark.parametrize("layout", ["format 2", "format 1"])
def test_a_resume_grafts_what_was_saved_before_its_graft(splits, tmp_path, layout):
    _, straight = run(splits, tmp_path / "straight", epochs=2)
    stopped, _ = run(splits, tmp_path / "stopped", epochs=1)
    if layout == "format 1":  # a run saved before this layout resumes the same way
        saved = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
        torch.save(as_format_1(saved), tmp_path / "stopped" / "checkpoint.pt")
        assert "graft_pending" in torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)
    payload = load_checkpoint(tmp_path / "stopped")
    assert payload["exchange_pending"] and payload["history"][-1]["alphas"] is None
    resumed = Trainer(tiny_config(epochs=2), splits, tmp_path / "stopped", log=lambda line: None)
    resumed.load_state(payload)
    assert resumed.fit() == straight
    history = json.loads((tmp_path / "stopped" / "metrics.json").read_text())["epochs"]
    expected = json.loads((tmp_path / "straight" / "metrics.json").read_text())["epochs"]
    assert history[0]["alphas"] == expected[0]["alphas"] and len(history[0]["alphas"]) == 2


# A run planned for 1 epoch, resumed to 2, ends as a straight 2-epoch run: its schedule is planned
# anew (cosine over 2 epochs; step with step_size 1). workers=2: persistent workers, which must
# see every epoch.
@pytest.mark.parametrize("workers, schedule", [(0, "cosine"), (0, "step"), (2, "cosine")])
def test_resume_to_more_epochs_equals_straight_through(splits, tmp_path, workers, schedule):
    plan = dict(workers=workers, scheduler=schedule, step_size=1, gamma=0.5)
    _, straight = run(splits, tmp_path / "straight", epochs=2, **plan)
    run(splits, tmp_path / "stopped", epochs=1, **plan)
    payload = load_checkpoint(tmp_path / "stopped")
    config = tiny_config(epochs=2, **plan)
    resumed_trainer = Trainer(config, splits, tmp_path / "stopped", log=lambda line: None)
    resumed_trainer.load_state(payload)
    resumed = resumed_trainer.fit()
    assert resumed == straight
    straight_state = load_checkpoint(tmp_path / "straight")["models"][1]
    for key, tensor in resumed_trainer.members[1].model.state_dict().items():
        assert torch.equal(tensor, straight_state[key]), key
    history = json.loads((tmp_path / "stopped" / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in history] == [1, 2]
    straight_history = json.loads((tmp_path / "straight" / "metrics.json").read_text())["epochs"]
    assert history[1]["lr"] == straight_history[1]["lr"] and min(history[1]["lr"]) > 0


def test_per_model_learning_rates(splits, tmp_path):
    trainer = Trainer(tiny_config(models=4, lr=0.1), splits, tmp_path, log=lambda line: None)
    expected = ring_learning_rates(0.1, 4)
    assert [m.optimizer.param_groups[0]["lr"] for m in trainer.members] == pytest.approx(expected)
    assert expected[0] < expected[1] < expected[2] < expected[3] == pytest.approx(0.1)
    same = Trainer(tiny_config(models=3, diverse_lr=False), splits, tmp_path / "b", log=lambda line: None)
    assert [m.initial_lr for m in same.members] == [0.01] * 3


def test_no_graft_trains_independent_models(splits, tmp_path):
    trainer, _ = run(splits, tmp_path, epochs=1, graft=False)
    (method,) = trainer.participants
    assert method.name == "none" and not method.exchanges_after(1)
    a, b = (m.model.state_dict() for m in trainer.members)
    assert not torch.equal(a["conv1.conv.weight"], b["conv1.conv.weight"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"][0]["alphas"] is None


def test_grafting_plus_distils_from_a_frozen_teacher(splits, tmp_path):
    run(splits, tmp_path / "teacher", epochs=1, models=1)
    teacher_file = str(tmp_path / "teacher" / "checkpoint.pt")
    with_teacher, _ = run(splits, tmp_path / "student", epochs=1, teacher=[f"{teacher_file}:0"])
    without, _ = run(splits, tmp_path / "plain", epochs=1)
    teacher = with_teacher.teachers[0]
    saved = load_checkpoint(tmp_path / "teacher")["models"][0]
    assert all(torch.equal(v, saved[k]) for k, v in teacher.state_dict().items())  # frozen
    assert not teacher.training
    # The distillation term adds to the loss from the first step on.
    student_loss = with_teacher.history[0]["loss"][0]
    assert student_loss > without.history[0]["loss"][0]


def test_a_teacher_retrained_at_the_same_path_makes_another_run(splits, tmp_path):
    """Runs are reused by their config, which names teachers by path: the teachers' weights are
    fingerprinted too, so a student of the old teacher is not reused for the new one."""
    import shutil

    from reidgraft.engine.runs import check_run_folder, teacher_fingerprints

    run(splits, tmp_path / "teacher", epochs=1, models=1)
    spec = f"{tmp_path / 'teacher' / 'checkpoint.pt'}:0"
    student, _ = run(splits, tmp_path / "student", epochs=1, teacher=[spec])
    config = tiny_config(epochs=1, teacher=[spec], output=str(tmp_path / "student"))
    payload = check_run_folder(config, splits)
    assert payload["teachers"] == teacher_fingerprints([spec]) == student.teacher_fingerprints
    shutil.rmtree(tmp_path / "teacher")
    run(splits, tmp_path / "teacher", epochs=1, models=1, seed=7)  # another teacher, the same path
    with pytest.raises(ConfigError, match="distilled from other weights than teacher .*retrained since"):
        check_run_folder(config, splits)
    resumed = Trainer(
        tiny_config(epochs=2, teacher=[spec]), splits, tmp_path / "student", log=lambda line: None
    )
    with pytest.raises(ValueError, match="distilled from other teacher weights"):  # --resume too
        resumed.load_state(load_checkpoint(tmp_path / "student"))
    path = tmp_path / "student" / "checkpoint.pt"
    torch.save({k: v for k, v in torch.load(path, weights_only=True).items() if k != "teachers"}, path)
    with pytest.raises(ConfigError, match="recorded no fingerprint of its teachers"):
        check_run_folder(config, splits)


def test_teacher_from_another_dataset_is_refused(splits, tmp_path):
    run(splits, tmp_path / "teacher", epochs=1, models=1)
    payload = load_checkpoint(tmp_path / "teacher")
    payload["num_classes"] = 99
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="99 identities; this run has synthetic with 8"):
        Trainer(tiny_config(teacher=[str(tmp_path / "other.pt")]), splits, tmp_path / "x")


def test_each_epoch_records_invalid_ratio_and_network_entropy(splits, tmp_path):
    from reidgraft.analysis import filter_norms, invalid_ratios, network_entropy

    trainer, _ = run(splits, tmp_path, epochs=1)
    record = json.loads((tmp_path / "metrics.json").read_text())["epochs"][-1]
    states = load_checkpoint(tmp_path)["models"]
    # Measured after the graft, on the weights the checkpoint holds.
    assert record["network_entropy"] == [network_entropy(state) for state in states]
    assert record["invalid_ratio_1e-3"] == [invalid_ratios(filter_norms(s), [1e-3])[0] for s in states]
    assert all(0 < entropy for entropy in record["network_entropy"])


def test_choices_are_made_on_validation_and_labelled(splits, tmp_path):
    trainer, final = run(splits, tmp_path, epochs=2, eval_every=1, val_ids=3)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert trainer.num_classes == 8 - 3  # the held-out identities left training
    assert all(len(epoch["val_metrics"]) == 2 for epoch in metrics["epochs"])
    for k, best in enumerate(metrics["best"]):
        assert best["chosen_on"] == "validation"
        chosen = max(metrics["epochs"], key=lambda epoch: (epoch["val_metrics"][k]["mAP"], -epoch["epoch"]))
        assert best["epoch"] == chosen["epoch"] and best["mAP"] == chosen["metrics"][k]["mAP"]
        assert best["validation_mAP"] == chosen["val_metrics"][k]["mAP"]
    report = metrics["report"]
    assert report["model0"] == final[0]
    assert report["mean"]["mAP"] == pytest.approx((final[0]["mAP"] + final[1]["mAP"]) / 2)
    last_validation = metrics["epochs"][-1]["val_metrics"]
    chosen = max(range(2), key=lambda k: (last_validation[k]["mAP"], -k))
    assert report["best_of_k"] == {**final[chosen], "chosen_on": "validation"}


def test_test_scoring_last_leaves_the_test_set_unscored_until_the_last_epoch(splits, tmp_path):
    """Validation every epoch, the test set once at the end, for the models and their EMA copies."""
    trainer = Trainer(
        tiny_config(epochs=3, eval_every=1, val_ids=3, test_scoring="last", ema=0.9), splits, tmp_path,
        log=lambda line: None,
    )  # fmt: skip
    scored, evaluate = [], trainer.task.evaluate

    def test_set(models):
        scored.append(trainer.epoch)
        return evaluate(models)

    trainer.task.evaluate = test_set
    final = trainer.fit()
    assert scored == [3, 3]  # the models, then their EMA copies, both after the last epoch
    epochs = json.loads((tmp_path / "metrics.json").read_text())["epochs"]
    assert [sorted(k for k in e if "metrics" in k) for e in epochs] == [
        ["ema_val_metrics", "val_metrics"],
        ["ema_val_metrics", "val_metrics"],
        ["ema_metrics", "ema_val_metrics", "metrics", "val_metrics"],
    ]
    assert epochs[-1]["metrics"] == final
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [best["epoch"] for best in metrics["best"]] == [3, 3]  # the one epoch with test scores
    assert {best["chosen_on"] for best in metrics["best"]} == {"the last epoch alone (test_scoring last)"}
    assert metrics["report"]["best_of_k"]["chosen_on"] == "validation"


def test_test_scoring_last_needs_validation():
    with pytest.raises(ConfigError, match="test_scoring last .* needs val_ids"):
        tiny_config(eval_every=1, test_scoring="last")
    tiny_config(eval_every=0, test_scoring="last")  # only the last epoch is scored anyway


def test_without_validation_the_choices_say_test_set(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert {best["chosen_on"] for best in metrics["best"]} == {"test set"}
    assert metrics["report"]["best_of_k"]["chosen_on"] == "test set"


ABLATIONS = {
    "noise scion": dict(scion="noise", scion_threshold=1e9),  # every filter takes noise
    "internal scion": dict(scion="internal", scion_threshold=1.0),
    "filter level": dict(graft_level="filter", filter_fraction=0.5),
    "same data order": dict(same_data_order=True),
    "no lr spread": dict(lr_spread="none"),
}


@pytest.fixture(scope="module")
def default_weights(splits, tmp_path_factory):
    trainer, _ = run(splits, tmp_path_factory.mktemp("default"), epochs=2)
    return [m.model.state_dict() for m in trainer.members]


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_each_ablation_reaches_the_trainer_and_changes_the_run(splits, tmp_path, default_weights, name):
    trainer, _ = run(splits, tmp_path, epochs=2, **ABLATIONS[name])
    # epoch 1's graft (or data order, or learning rate) shows in the weights evaluated at epoch 2
    changed = [
        not torch.equal(member.model.state_dict()[key], default[key])
        for member, default in zip(trainer.members, default_weights, strict=True)
        for key in ("conv1.conv.weight", "classifier.weight")
    ]
    assert any(changed), name
    record = json.loads((tmp_path / "metrics.json").read_text())["epochs"][0]
    if "scion" in ABLATIONS[name]:
        assert record["alphas"] is None and sum(record["grafted_filters"][0].values()) > 0
    if name == "same data order":
        assert not torch.equal(trainer.members[0].model.state_dict()["conv1.conv.weight"],
                               trainer.members[1].model.state_dict()["conv1.conv.weight"])  # fmt: skip


def test_the_former_no_diverse_lr_still_works():
    assert tiny_config(diverse_lr=False).lr_spread == "none"
    assert tiny_config().lr_spread == "cosine"


def test_warm_up_learning_rates_by_epoch(splits, tmp_path):
    import math

    from reidgraft.engine.optim import build_scheduler

    config = tiny_config(
        warmup_epochs=3, warmup_factor=0.01, scheduler="step", step_size=3, gamma=0.1, epochs=5
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(config, optimizer)
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.01, 0.505, 1.0, 0.1, 0.1])
    # through the trainer, with cosine over 2 epochs: epoch 1 warms up, epoch 2 is cosine's midpoint
    trainer, _ = run(splits, tmp_path, epochs=2, warmup_epochs=1, scheduler="cosine")
    history = json.loads((tmp_path / "metrics.json").read_text())["epochs"]
    bases = [member.initial_lr for member in trainer.members]
    assert history[0]["lr"] == pytest.approx([0.01 * base for base in bases])
    assert history[1]["lr"] == pytest.approx([base * (1 + math.cos(math.pi / 2)) / 2 for base in bases])


def test_the_graft_after_a_save_is_reported_on_its_own_line(splits, tmp_path):
    """In the authors' order an epoch's line is written before its graft: the graft gets a line
    of its own, with the alphas metrics.json files under that epoch."""
    lines = []
    Trainer(tiny_config(epochs=2), splits, tmp_path, log=lines.append).fit()
    grafts = [line for line in lines if line.startswith("graft after epoch")]
    first = json.loads((tmp_path / "metrics.json").read_text())["epochs"][0]["alphas"]
    means = " ".join(f"{sum(a.values()) / len(a):.3f}" for a in first)
    assert grafts == [f"graft after epoch 1  mean alpha {means}"]  # none after the last epoch


def test_tiny_strong_run_trains_two_grafted_models_and_resumes_exactly(splits, tmp_path):  # noqa: F811
    strong = dict(
        loss=["softmax", "triplet"], sampler="identity", num_instances=2, bnneck=True, warmup_epochs=1,
        center_loss_weight=0.0005, transforms=["random_flip", "random_erase"], optimizer="adam", lr=3.5e-4,
        scheduler="multistep", milestones=[2], arch="resnet18", height=64, width=32,
        # fp32, as auto now chooses here: on an AMX Xeon (torch 2.14) bf16 training of resnet18 at
        # 64x32 turns to NaN (layer4.0.conv1 makes a map one pixel wide: see bf16_hazard)
        amp="none",
    )  # fmt: skip
    straight = Trainer(tiny_config(**strong, epochs=3), splits, tmp_path / "straight", log=lambda line: None)
    final = straight.fit()
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert [row["model"] for row in final] == [0, 1]
    assert all(0 <= row["mAP"] <= 1 for row in final)
    assert len(metrics["epochs"][0]["alphas"]) == 2  # grafted
    assert all(loss > 0 for epoch in metrics["epochs"] for loss in epoch["loss"])
    assert metrics["epochs"][0]["lr"][1] == pytest.approx(3.5e-6)  # warm-up starts at 0.01 x lr

    # 2 epochs, then resumed to 3: the same models as the straight run (sampler, centers, graft)
    first = Trainer(tiny_config(**strong, epochs=2), splits, tmp_path / "resumed", log=lambda line: None)
    first.fit()
    payload = load_checkpoint(tmp_path / "resumed")
    assert all(center for center in payload["centers"])
    resumed = Trainer(tiny_config(**strong, epochs=3), splits, tmp_path / "resumed", log=lambda line: None)
    resumed.load_state(payload)
    resumed.fit()
    for a, b in zip(straight.members, resumed.members, strict=True):
        for key, value in a.model.state_dict().items():
            torch.testing.assert_close(b.model.state_dict()[key], value, rtol=0, atol=0)
        torch.testing.assert_close(b.center.centers, a.center.centers, rtol=0, atol=0)
