"""The population methods: DML's loss by hand, and each method against the run it must equal
(DML at weight 0 and PAPA at rate 0: independent models; PAPA-all at K = 2: a graft at alpha
0.5; EMA at decay 0: the model), resume mid-run against a straight run, and bad settings."""

import math

import pytest
import torch

from reidgraft.config import ConfigError, check_method_settings
from reidgraft.engine import Trainer, load_checkpoint
from reidgraft.population import EmaCopies, mutual_loss

from .tiny import config


def train(splits, folder, **overrides) -> Trainer:
    trainer = Trainer(config(**overrides), splits, folder, log=lambda line: None)
    trainer.fit()
    return trainer


def states(trainer: Trainer) -> list[dict[str, torch.Tensor]]:
    return [m.model.state_dict() for m in trainer.members]


def assert_same_models(a: Trainer, b: Trainer) -> None:
    for one, other in zip(states(a), states(b), strict=True):
        for key, tensor in one.items():
            torch.testing.assert_close(other[key], tensor, rtol=0, atol=0, msg=key)


def test_mutual_loss_is_the_mean_kl_to_the_peers_by_hand():
    logits = [
        torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]),
        torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]),
        torch.tensor([[0.0, 0.0, 0.0], [0.0, 3.0, 1.0]]),
    ]

    def kl(p_logits, q_logits, row, t):
        p = [math.exp(v / t) for v in p_logits[row]]
        q = [math.exp(v / t) for v in q_logits[row]]
        p, q = [v / sum(p) for v in p], [v / sum(q) for v in q]
        return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))

    for t in (1.0, 2.0):
        expected = t**2 * sum(sum(kl(logits[j], logits[0], r, t) for r in range(2)) / 2 for j in (1, 2)) / 2
        assert mutual_loss(logits, 0, t).item() == pytest.approx(expected, rel=1e-6)
    own = logits[1].clone().requires_grad_()
    peer = logits[0].clone().requires_grad_()
    mutual_loss([peer, own], 1).backward()
    assert peer.grad is None and own.grad.abs().sum() > 0  # the peer's output is detached


def test_dml_at_weight_zero_is_nograft_with_a_shared_data_order(splits, tmp_path):
    dml = train(splits, tmp_path / "dml", population="dml", dml_weight=0.0)
    # (one after another, as DML's shared batch steps: side by side sums on fewer threads)
    independent = train(
        splits, tmp_path / "none", population="none", same_data_order=True, parallel_models="none"
    )
    assert_same_models(dml, independent)
    changed = train(splits, tmp_path / "dml1", population="dml", epochs=1)
    assert not torch.equal(states(changed)[0]["conv1.conv.weight"], states(dml)[0]["conv1.conv.weight"])


def test_dml_trains_the_strong_recipe_on_the_classifier_logits_after_the_neck(splits, tmp_path):
    strong = dict(
        loss=["softmax", "triplet"], sampler="identity", num_instances=2, bnneck=True,
        center_loss_weight=0.0005,
    )  # fmt: skip
    trainer = Trainer(config(population="dml", epochs=1, **strong), splits, tmp_path, log=lambda line: None)
    seen = []
    method = trainer.participants[0]
    original = method.step_loss
    method.step_loss = lambda k, logits: seen.append([t.shape for t in logits]) or original(k, logits)
    trainer.fit()
    classes = trainer.num_classes
    assert seen and all(shapes == [torch.Size([8, classes])] * 2 for shapes in seen)
    assert all(math.isfinite(loss) and loss > 0 for loss in trainer.history[0]["loss"])


def test_papa_at_rate_zero_is_nograft(splits, tmp_path):
    papa = Trainer(config(population="papa", papa_every=1), splits, tmp_path / "papa", log=lambda line: None)
    papa.participants[0].rate = 0.0  # (the config refuses 0: it would do nothing)
    papa.fit()
    assert_same_models(papa, train(splits, tmp_path / "none", population="none"))
    pulled = train(splits, tmp_path / "pulled", population="papa", papa_every=1, papa_rate=0.5)
    assert not torch.equal(states(pulled)[0]["conv1.conv.weight"], states(papa)[0]["conv1.conv.weight"])


def test_papa_all_every_epoch_at_k2_is_a_graft_at_alpha_half(splits, tmp_path):
    papa = train(splits, tmp_path / "papa", population="papa", papa_mode="all", papa_every_epochs=1, epochs=3)
    graft = train(splits, tmp_path / "graft", criterion="fixed", fixed_alpha=0.5, epochs=3)
    assert_same_models(papa, graft)
    assert [record.get("averaged") for record in papa.history] == [[[0, 1]], [[0, 1]], None]


def test_ema_at_decay_zero_is_the_model_and_is_evaluated_and_saved(splits, tmp_path):
    trainer = train(splits, tmp_path / "ema", ema=0.0, epochs=1, eval_every=1)
    copies = trainer.participants[-1].copies
    for model, ema in zip(trainer.members, copies, strict=True):
        mine = model.model.state_dict()
        for key, tensor in ema.state_dict().items():
            if "running" not in key:  # the copy's BN statistics were estimated anew to evaluate it
                torch.testing.assert_close(tensor, mine[key], rtol=0, atol=0, msg=key)
    metrics = trainer.metrics_file()
    assert metrics["ema"]["decay"] == 0.0 and len(metrics["ema"]["final"]) == 2
    assert len(load_checkpoint(tmp_path / "ema")["participants"]["ema"]["copies"]) == 2
    plain = train(splits, tmp_path / "plain", epochs=1, eval_every=1)
    assert_same_models(trainer, plain)  # keeping and evaluating the copies changes no training


def test_ema_copies_move_by_one_minus_decay():
    model = torch.nn.Linear(2, 1)
    copies = EmaCopies([model], 0.75)
    before = copies.copies[0].weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    copies.update()
    torch.testing.assert_close(copies.copies[0].weight, before + 0.25)


def test_ema_warmup_decays():
    """power: min(decay, 1 - (1 + t)^(-2/3)), a copy at the first update, then the cap; unbiased:
    the decay-weighted mean of every weight seen (Adam's bias correction), at any decay."""
    model = torch.nn.Linear(2, 1)
    power, plain = EmaCopies([model], 0.99, warmup="power"), EmaCopies([model], 0.99)
    assert power.decay_at(0) == 0.0
    assert power.decay_at(1) == pytest.approx(1 - 2 ** (-2 / 3)) == pytest.approx(0.370, abs=1e-3)
    assert power.decay_at(100) == pytest.approx(1 - 101 ** (-2 / 3)) == pytest.approx(0.9538, abs=1e-4)
    assert power.decay_at(10**4) == 0.99 and plain.decay_at(0) == plain.decay_at(100) == 0.99
    weights = [torch.tensor([[float(v), -2.0 * v]]) for v in (1, 5, -3, 2, 7)]
    unbiased = EmaCopies([model], 0.9, warmup="unbiased")
    for t, value in enumerate(weights):
        with torch.no_grad():
            model.weight.copy_(value)
        unbiased.update()
        shares = torch.tensor([0.9 ** (t - i) for i in range(t + 1)], dtype=torch.float64)
        expected = sum(share * w.double() for share, w in zip(shares, weights, strict=False)) / shares.sum()
        torch.testing.assert_close(unbiased.copies[0].weight.double(), expected, rtol=1e-6, atol=1e-6)
    assert unbiased.decay_at(0) == 0.0 and unbiased.updates == 5
    assert unbiased.settings() == {"decay": 0.9, "warmup": "unbiased", "updates": 5}
    assert "warmup" not in plain.settings()
    with pytest.raises(ValueError, match="unknown EMA warm-up 'linear'"):
        EmaCopies([model], 0.9, warmup="linear")


def test_papa_closes_scales_the_pull_to_the_run(splits, tmp_path):
    """The rate at which the pulls alone would close the share: (1 - rate)^pulls = 1 - share."""
    from reidgraft.population.papa import PopulationAveraging

    papa = PopulationAveraging([torch.nn.Linear(2, 1)] * 2, rate=0.01, every=10, closes=0.9)
    papa.plan_run(epochs=3, steps_per_epoch=25)  # two pulls an epoch
    assert papa.pulls == 6 and (1 - papa.rate) ** 6 == pytest.approx(0.1)
    fixed = PopulationAveraging([torch.nn.Linear(2, 1)] * 2, rate=0.01, every=10)
    fixed.plan_run(epochs=3, steps_per_epoch=25)
    assert fixed.rate == 0.01 and "papa_closes" not in fixed.settings()
    trainer = train(splits, tmp_path / "papa", population="papa", papa_every=2, papa_closes=0.5, epochs=2)
    steps = len(trainer.train_loaders[0])
    settings = trainer.metrics_file()["population"]
    assert settings["pulls"] == 2 * (steps // 2) and settings["papa_closes"] == 0.5
    assert (1 - settings["papa_rate"]) ** settings["pulls"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="give it or papa_rate, not both"):
        config(population="papa", papa_closes=0.5, papa_rate=0.02)
    with pytest.raises(ConfigError, match="papa_closes must be a share in"):
        config(population="papa", papa_closes=1.0)


def test_an_ema_grid_keeps_a_copy_per_decay_beside_the_models_and_changes_no_training(splits, tmp_path):
    from reidgraft.engine import TrainedRun

    trainer = train(
        splits, tmp_path / "grid", ema=0.9, ema_grid=[0.5, 0.0], ema_warmup="unbiased", epochs=2,
        eval_every=1, val_ids=2,
    )  # fmt: skip
    assert [p.name for p in trainer.participants][1:] == ["ema", "ema_0.5", "ema_0"]
    metrics = trainer.metrics_file()
    assert [metrics[name]["decay"] for name in ("ema", "ema_0.5", "ema_0")] == [0.9, 0.5, 0.0]
    assert all(metrics[name]["warmup"] == "unbiased" for name in ("ema", "ema_0.5", "ema_0"))
    for record in trainer.history:
        assert all(len(record[f"{name}_val_metrics"]) == 2 for name in ("ema", "ema_0.5", "ema_0"))
    run = TrainedRun(tmp_path / "grid")
    assert run.ema_names() == ["ema", "ema_0.5", "ema_0"]
    copy = run.model(1, ema="ema_0").state_dict()  # decay 0: the model itself (but BN statistics)
    model = trainer.members[1].model.state_dict()
    assert all(
        torch.equal(copy[key], model[key])
        for key in model
        if "running" not in key and "num_batches" not in key
    )
    assert not torch.equal(run.ema_state(1, "ema")["classifier.weight"], model["classifier.weight"])
    with pytest.raises(ValueError, match="kept no ema_0.7 copies"):
        run.ema_state(0, "ema_0.7")
    plain = train(splits, tmp_path / "plain", epochs=2, eval_every=1, val_ids=2)
    assert_same_models(trainer, plain)


def test_ema_grid_reads_numbers_from_a_recipe_and_the_command_line(tmp_path):
    import argparse

    from reidgraft.config import build_config
    from reidgraft.config.arguments import add_config_arguments, given_fields
    from reidgraft.config.recipes import checked_value, load_yaml

    assert checked_value("ema_grid", [0.995, 1, "2e-1"]) == [0.995, 1.0, 0.2]  # (YAML 1.1: 2e-1 is text)
    assert checked_value("ema_grid", 0.5) == [0.5]
    with pytest.raises(ConfigError, match="ema_grid must be a list of numbers"):
        checked_value("ema_grid", ["fast"])
    recipe = tmp_path / "grid.yaml"
    recipe.write_text("dataset: synthetic\nema: 0.99\nema_grid: [0.995, 0.998]\n")
    assert build_config(load_yaml(str(recipe))).ema_grid == [0.995, 0.998]
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    given = given_fields(parser.parse_args(["--ema", "0.9", "--ema-grid", "0.95", "0.5"]))
    assert given["ema_grid"] == [0.95, 0.5] and build_config(**given).ema_grid == [0.95, 0.5]


def test_ema_grid_is_checked():
    with pytest.raises(ConfigError, match="ema_grid adds decays beside --ema's"):
        config(ema_grid=[0.99])
    with pytest.raises(ConfigError, match="repeats a decay"):
        config(ema=0.99, ema_grid=[0.995, 0.99])
    with pytest.raises(ConfigError, match="agree to 6 digits"):  # their copies would share a name
        config(ema=0.99, ema_grid=[0.9999991, 0.9999992])
    with pytest.raises(ConfigError, match="must lie in"):
        config(ema=0.99, ema_grid=[1.0])


def test_a_papa_rate_scaled_to_the_run_keeps_its_planned_length_when_resumed_longer(splits, tmp_path):
    settings = dict(population="papa", papa_every=2, papa_closes=0.5)
    first = train(splits, tmp_path / "papa", epochs=1, **settings)
    planned = first.participants[0].rate
    longer = Trainer(config(epochs=2, **settings), splits, tmp_path / "papa", log=lambda line: None)
    assert longer.participants[0].rate != planned  # planned anew for 2 epochs, until the state is read
    longer.load_state(load_checkpoint(tmp_path / "papa"))
    assert (
        longer.participants[0].rate == planned and longer.participants[0].pulls == first.participants[0].pulls
    )


def test_ema_warmup_needs_an_ema():
    with pytest.raises(ConfigError, match="ema_warmup power starts an EMA"):
        config(ema_warmup="power")


@pytest.mark.parametrize(
    "method",
    [
        dict(population="dml"),
        dict(population="papa", papa_every=2),
        dict(population="papa", papa_mode="pairs", papa_every_epochs=1, models=3),
        dict(population="none", ema=0.9, models=1),
        dict(population="none", ema=0.9, ema_warmup="unbiased", models=1),
        dict(population="none", ema=0.9, ema_grid=[0.5], ema_warmup="power", models=1),
    ],
    ids=["dml", "papa", "papa_pairs", "ema", "ema_warmup", "ema_grid"],
)
def test_a_resumed_run_equals_a_straight_one(splits, tmp_path, method):
    straight = train(splits, tmp_path / "straight", epochs=3, **method)
    first = train(splits, tmp_path / "resumed", epochs=2, **method)
    resumed = Trainer(config(epochs=3, **method), splits, tmp_path / "resumed", log=lambda line: None)
    resumed.load_state(load_checkpoint(tmp_path / "resumed"))
    resumed.fit()
    assert first.epoch == 2
    assert_same_models(straight, resumed)
    if "ema" in method:
        for mine, theirs in zip(straight.participants[1:], resumed.participants[1:], strict=True):
            assert mine.name == theirs.name and mine.updates == theirs.updates
            for a, b in zip(mine.copies, theirs.copies, strict=True):
                for key, tensor in a.state_dict().items():
                    torch.testing.assert_close(b.state_dict()[key], tensor, rtol=0, atol=0, msg=key)
    assert straight.metrics_file()["population"] == resumed.metrics_file()["population"]


def test_an_ema_run_saved_before_participants_had_state_resumes_as_a_straight_one(splits, tmp_path):
    from reidgraft.engine import TrainedRun

    from ..engine.test_trainer import as_format_1

    method = dict(population="none", ema=0.9, models=1)
    straight = train(splits, tmp_path / "straight", epochs=2, **method)
    train(splits, tmp_path / "old", epochs=1, **method)
    checkpoint = tmp_path / "old" / "checkpoint.pt"
    torch.save(as_format_1(torch.load(checkpoint, weights_only=True)), checkpoint)
    assert TrainedRun(tmp_path / "old").has_ema  # its copies are read where format 1 kept them
    resumed = Trainer(config(epochs=2, **method), splits, tmp_path / "old", log=lambda line: None)
    resumed.load_state(load_checkpoint(tmp_path / "old"))
    resumed.fit()
    assert_same_models(straight, resumed)
    for a, b in zip(straight.participants[-1].copies, resumed.participants[-1].copies, strict=True):
        for key, tensor in a.state_dict().items():
            torch.testing.assert_close(b.state_dict()[key], tensor, rtol=0, atol=0, msg=key)


def test_papa_reports_its_average_beside_the_models(splits, tmp_path):
    trainer = train(splits, tmp_path / "papa", population="papa", epochs=1)
    last = trainer.history[-1]
    assert set(last["average_metrics"]) >= {"mAP", "rank1"} and 0 <= last["average_metrics"]["mAP"] <= 1
    assert trainer.metrics_file()["population"] == {
        "method": "papa", "papa_mode": "gradual", "papa_rate": 0.01, "papa_every": 10, "lr_scaled": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(population="dml", models=1), "population dml needs at least 2 models"),
        (dict(population="papa", papa_rate=0.0), "papa_rate must lie in \\(0, 1\\]"),
        (dict(population="papa", papa_rate=1.5), "papa_rate must lie in \\(0, 1\\]"),
        (dict(population="papa", papa_every=0), "papa_every must be at least 1"),
        (dict(ema=1.5), "ema must be a decay in \\[0, 1\\)"),
        (dict(ema=1.0), "ema must be a decay in \\[0, 1\\)"),
        (dict(population="dml", dml_temperature=0.0), "dml_temperature must be positive"),
    ],
)
def test_bad_population_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as error:
        config(**settings)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "given, message",
    [
        (dict(population="dml", criterion="l1"), "criterion is a setting of --population graft"),
        (dict(population="graft", dml_weight=2.0), "dml_weight is a setting of --population dml"),
        (dict(population="none", papa_mode="all"), "papa_mode is a setting of --population papa"),
    ],
)
def test_a_setting_given_for_another_method_is_refused(given, message):
    with pytest.raises(ConfigError, match=message):
        check_method_settings(config(**given), given)


def test_a_recipe_serves_every_method_and_bins_is_everyones():
    # a recipe's grafting settings do not stop its baseline runs (compare's nograft, dml, ...)
    recipe = dict(c=5.0, top_bin="authors", eval_after_graft=True)
    for population in ("none", "dml", "papa"):
        check_method_settings(config(population=population, **recipe), {"population": population})
    check_method_settings(config(population="none", bins=20), {"population": "none", "bins": 20})


def test_runs_saved_with_graft_true_are_the_same_runs_today():
    from reidgraft.engine.runs import config_sha256

    today = config().to_dict()
    saved = {key: value for key, value in today.items() if key != "population"} | {"graft": True}
    assert config_sha256(saved) == config_sha256(today)
    assert config_sha256({**saved, "graft": False}) == config_sha256({**today, "population": "none"})


def test_an_epoch_whose_evaluation_fails_is_saved_and_resumes(splits, tmp_path):
    trainer = Trainer(config(epochs=2, eval_every=1), splits, tmp_path / "run", log=lambda line: None)
    calls = []

    def failing(models):
        calls.append(1)
        raise ValueError("no valid query")

    trainer.task.evaluate = failing
    with pytest.raises(ValueError, match="no valid query"):
        trainer.fit()
    payload = load_checkpoint(tmp_path / "run")
    assert payload["epoch"] == 1 and payload["exchange_pending"]  # saved before its graft
    assert payload["history"][0]["evaluation_failed"] and "metrics" not in payload["history"][0]
    resumed = Trainer(config(epochs=2, eval_every=1), splits, tmp_path / "run", log=lambda line: None)
    resumed.load_state(payload)
    resumed.fit()
    straight = train(splits, tmp_path / "straight", epochs=2, eval_every=1)
    assert_same_models(resumed, straight)  # the failed evaluation changed nothing else
