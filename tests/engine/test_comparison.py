"""The compute-matched baselines, the contrasts and the paired bootstrap behind reidgraft-compare."""

import re

import numpy as np
import pytest
import torch

from reidgraft.config import build_config
from reidgraft.data.datasets import synthetic_splits
from reidgraft.engine.comparison import (
    EMA_DECAY,
    bootstrap_difference,
    load_scores,
    save_scores,
    weight_average,
)
from reidgraft.engine.tasks import make_task


class PooledColours(torch.nn.Module):
    """A tiny stand-in for a re-ID backbone with batch norm: pooled colours through a fixed random
    projection. Its features of different synthetic people are far apart (no near-ties), so exact
    equalities can be asserted."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.pool = torch.nn.AdaptiveAvgPool2d((4, 2))
        self.project = torch.nn.Linear(3 * 4 * 2, 16)
        self.bn = torch.nn.BatchNorm1d(16)

    def forward(self, images):
        return self.bn(self.project(self.pool(images).flatten(1)))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    config = build_config(
        dataset="synthetic", root=str(tmp_path_factory.mktemp("data")), height=32, width=16, metric="cosine",
        eval_batch_size=64, batch_size=16, device="cpu",
    )  # fmt: skip
    splits = synthetic_splits(
        config.root, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16
    )
    return make_task(config, splits)


def trained(task, seed):
    """A PooledColours whose batch norm has seen training images (so it is not the identity)."""
    model = PooledColours(seed)
    return weight_average(task, [model]).eval()


def test_the_ensemble_of_two_identical_models_equals_one_model(task):
    model = trained(task, 0)
    alone = task.item_scores([model])[0]
    together = task.ensemble_scores([model, model])
    assert 0.2 < alone["mAP"].mean() < 1.0  # a ranking with something to lose
    for key in alone:
        np.testing.assert_allclose(together[key], alone[key], atol=1e-6)


def test_the_weight_average_of_identical_models_is_the_model(task):
    model = trained(task, 1)
    average = weight_average(task, [model, model])
    for key, tensor in model.state_dict().items():  # weights and re-estimated statistics alike
        torch.testing.assert_close(average.state_dict()[key], tensor)
    assert not average.training
    alone, averaged = task.item_scores([model, average])
    np.testing.assert_allclose(averaged["mAP"], alone["mAP"])
    # two different models average to neither; batch norm is re-estimated, not averaged
    other = trained(task, 2)
    mixed = weight_average(task, [model, other])
    # (the running mean is linear in the weights here, so it is the variance that shows it)
    assert not torch.allclose(mixed.bn.running_var, (model.bn.running_var + other.bn.running_var) / 2)


def test_the_paired_bootstrap_interval_holds_the_mean_difference():
    rng = np.random.default_rng(1)
    theirs = rng.random((3, 200))
    ours = theirs + 0.05 + 0.01 * rng.standard_normal((3, 200))
    difference, (low, high) = bootstrap_difference(ours, theirs)
    assert difference == pytest.approx((ours - theirs).mean())
    assert low < difference < high and 0.04 < low and high < 0.06
    same, (low, high) = bootstrap_difference(theirs, theirs)
    assert same == low == high == 0.0
    with pytest.raises(ValueError, match="same \\(seeds, items\\) shape"):
        bootstrap_difference(ours, theirs[:2])


def test_kept_scores_come_back_only_under_their_key(task, tmp_path):
    scores = task.item_scores([trained(task, 1), trained(task, 2)])
    path = tmp_path / "compare-scores-models.npz"
    save_scores(path, "key-a", scores)
    kept = load_scores(path, "key-a")
    assert len(kept) == 2 and [set(s) for s in kept] == [{"mAP", "rank1"}] * 2
    for ours, theirs in zip(kept, scores, strict=True):
        for metric in ours:
            np.testing.assert_array_equal(ours[metric], theirs[metric])
    assert not np.array_equal(kept[0]["mAP"], kept[1]["mAP"])  # the models stay apart, in order
    assert load_scores(path, "key-b") is None
    assert load_scores(tmp_path / "missing.npz", "key-a") is None
    path.write_bytes(path.read_bytes()[:200])  # a damaged file is scored again, not an error
    assert load_scores(path, "key-a") is None
    assert [p.name for p in tmp_path.iterdir()] == ["compare-scores-models.npz"]


def test_edited_kept_scores_are_scored_again(tmp_path):
    from reidgraft.files import arrays_digest

    good = [{"mAP": np.array([0.5, 1.0, 0.25]), "rank1": np.array([1.0, 1.0, 0.0])}] * 2
    path = tmp_path / "scores.npz"

    def edited(change, keep_digest=False):
        """The kept file with `change` made to its arrays; its digest redone unless `keep_digest`."""
        save_scores(path, "key", good)
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in stored.files if name not in ("key", "digest")}
            digest = str(stored["digest"])
        change(arrays)
        digest = digest if keep_digest else arrays_digest(arrays)
        np.savez(path, key=np.array("scores 1\0key"), digest=np.array(digest), **arrays)
        return load_scores(path, "key")

    assert len(edited(lambda arrays: None)) == 2
    assert edited(lambda arrays: arrays.update({"0/mAP": np.ones(3)}), keep_digest=True) is None
    assert edited(lambda arrays: arrays.update({"0/mAP": np.ones(2)})) is None  # wrong length
    assert edited(lambda arrays: arrays.update({"1/mAP": np.array([0.5, np.nan, 0.2])})) is None
    assert edited(lambda arrays: arrays.update({"1/rank1": np.array([2.0, 1.0, 0.0])})) is None
    assert edited(lambda arrays: arrays.pop("1/rank1")) is None  # a missing array


def test_a_primary_endpoint_is_parsed_or_refused_in_one_line():
    from reidgraft.config import ConfigError
    from reidgraft.engine.comparison import COMPARE_METHODS, PRIMARY, Contrast, parse_contrast

    methods = [*COMPARE_METHODS, "graft_c5"]
    assert parse_contrast(PRIMARY, methods) == Contrast("graft", "best_of_k", "nograft", "best_of_k")
    assert parse_contrast("graft_c5:model0-single", methods) == Contrast(
        "graft_c5", "model0", "single", "best_of_k"
    )
    for text, message in (
        ("graft", "write OURS[:REPORT]-THEIRS[:REPORT]"),
        ("graft-nograft-single", "write OURS[:REPORT]-THEIRS[:REPORT]"),
        ("graft-mutual", "'mutual' is not among the compared methods"),
        ("graft:last-nograft", "unknown report 'last'"),
        ("graft:mean-graft:model0", "a method against itself"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)) as refused:
            parse_contrast(text, methods)
        assert "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="'single_long' is not among the compared methods"):
        parse_contrast("graft-single_long", ["graft", "nograft"])


def test_a_variant_is_a_name_and_checked_settings():
    from reidgraft.config import ConfigError
    from reidgraft.engine.comparison import parse_variant

    assert parse_variant("graft_c5:c=5") == ("graft_c5", {"c": 5.0})
    assert parse_variant("wide:c=2,top_bin=authors, graft_level=filter") == (
        "wide", {"c": 2.0, "top_bin": "authors", "graft_level": "filter"}
    )  # fmt: skip
    assert parse_variant("late:milestones=[40,70],lr=1e-3") == ("late", {"milestones": [40, 70], "lr": 0.001})
    for text, message in (
        ("graft_c5", "write NAME:FIELD=VALUE"),
        ("x:c=", "c has no value; write c=VALUE"),
        ("x:population=dml", "'population' is not a setting a variant may change"),
        ("x:height=256", "'height' is not a setting a variant may change"),
        ("x:val_ids=5", "every run shares the data and the evaluation"),
        ("Graft:c=5", "write NAME:FIELD=VALUE"),
        ("graft_c5:c", "write NAME:FIELD=VALUE"),
        ("nograft:c=5", "'nograft' is a built-in method"),
        ("x:seed=3", "'seed' is not a setting a variant may change"),
        ("x:colour=red", "'colour' is not a setting a variant may change"),
        ("x:c=five", "c must be a number, got 'five'"),
        ("x:amp=[", "--variant 'x:amp=[': "),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)) as refused:
            parse_variant(text)
        assert "\n" not in str(refused.value)


def per_seed_scores(values: list[list[float]], one_value: bool = False, chosen: str | None = None):
    """What Comparison.scores gives for each seed: every report, from (seeds x models) mAP lists."""
    found = []
    for seed in values:
        each = [{"mAP": np.full(4, v), "rank1": np.full(4, v / 2)} for v in seed]
        best = int(np.argmax(seed))
        mean = {key: np.mean([s[key] for s in each], axis=0) for key in each[0]}
        reports = {"model0": each[0], "mean": mean, "best_of_k": each[best]}
        found.append({"reports": reports, "chosen_on": chosen, "one_value": one_value})
    return found


def test_the_primary_contrast_comes_first_paired_by_seed_and_the_rest_are_exploratory():
    from reidgraft.engine.comparison import Contrast, contrasts

    scores = {
        ("graft", 2): per_seed_scores([[0.30, 0.34], [0.31, 0.33], [0.29, 0.35]], chosen="validation"),
        ("nograft", 2): per_seed_scores([[0.25, 0.36], [0.27, 0.34], [0.24, 0.37]], chosen="validation"),
        ("single", 2): per_seed_scores([[0.33], [0.32], [0.36]], one_value=True),
        ("graft_c5", 2): per_seed_scores([[0.30, 0.31], [0.30, 0.32], [0.28, 0.33]], chosen="validation"),
    }
    primary = Contrast("graft", "best_of_k", "nograft", "best_of_k")
    paired = contrasts(scores, [2], ("mAP", "rank1"), primary, ["graft_c5"])
    first = paired[0]
    assert (first["contrast"], first["metric"], first["primary"]) == (primary.name, "mAP", True)
    assert first["per_seed"] == pytest.approx([0.34 - 0.36, 0.33 - 0.34, 0.35 - 0.37])
    assert first["label"] == "graft (best_of_k) − nograft (best_of_k)"
    assert first["chosen_on"] == {"graft": "validation", "nograft": "validation"}
    assert first["verdict"] == "grafting hurts by -1.67 [-3.10, -0.23] points (rough: 3 seeds)"
    assert [e["primary"] for e in paired].count(True) == 1
    assert (paired[1]["contrast"], paired[1]["metric"]) == (primary.name, "rank1")
    by_name = {(e["contrast"], e["metric"]): e for e in paired}
    model0 = by_name[("graft:model0-nograft:model0", "mAP")]
    assert model0["per_seed"] == pytest.approx([0.05, 0.04, 0.05]) and "chosen_on" not in model0
    low, high = model0["t_interval95"]
    assert 0 < low < model0["mean"] < high
    single = by_name[("graft:best_of_k-single:best_of_k", "mAP")]
    assert single["label"] == "graft (best_of_k) − single" and single["chosen_on"] == {"graft": "validation"}
    assert ("graft_c5:mean-nograft:mean", "rank1") in by_name
    assert not any("single_long" in name or "graft_same_lr" in name for name, _ in by_name)  # not run
    assert len(by_name) == len(paired)  # no contrast twice


def test_single_long_trains_one_model_k_times_as_long(task, tmp_path):
    from reidgraft.engine.comparison import Comparison

    recipe = {"dataset": "synthetic", "root": task.config.root, "epochs": 3, "eval_every": 1,
              "scheduler": "multistep", "milestones": [2], "height": 32, "width": 16}  # fmt: skip
    comparison = Comparison(
        recipe, build_config(recipe), tmp_path, data=task.splits, variants={"x": {"c": 5.0}}
    )
    long = comparison.changes("single_long", 4, seed=2)
    keys = ("models", "population", "epochs", "milestones", "eval_every", "seed")
    assert {key: long[key] for key in keys} == {
        "models": 1, "population": "none", "epochs": 12, "milestones": [8], "eval_every": 4, "seed": 2000,
    }  # fmt: skip
    assert comparison.changes("single", 4, seed=1) == {"models": 1, "population": "none", "seed": 1000}
    assert comparison.changes("x", 2, seed=0) == {"models": 2, "population": "graft", "c": 5.0, "seed": 0}
    assert comparison.changes("ema", 4, seed=1) == {
        "models": 1,
        "population": "none",
        "ema": 0.99,
        "seed": 1000,
    }
    names = [comparison.run_name(m, 4, 1) for m in ("single", "single_long", "graft", "ema", "dml")]
    assert names == [
        "seed1-k1-single",
        "seed1-k4-single_long",
        "seed1-k4-graft",
        "seed1-k1-ema",
        "seed1-k4-dml",
    ]


def test_a_compare_method_is_one_registry_entry(task, tmp_path, monkeypatch):
    from reidgraft.engine.comparison import (
        COMPARE_METHODS,
        CompareMethod,
        Comparison,
        Contrast,
        Pairing,
        exploratory_contrasts,
    )

    every_epoch = {"population": "papa", "papa_mode": "all", "papa_every_epochs": 1}
    monkeypatch.setitem(
        COMPARE_METHODS,
        "papa_epochs",
        CompareMethod(
            every_epoch,
            contrasts=(Pairing("nograft"), Pairing("papa_epochs", ("best_of_k",), ours="graft", listed=1)),
        ),
    )
    recipe = {"dataset": "synthetic", "root": task.config.root, "epochs": 2, "height": 32, "width": 16}
    comparison = Comparison(recipe, build_config(recipe), tmp_path, data=task.splits)
    assert comparison.changes("papa_epochs", 3, seed=1) == {"models": 3, **every_epoch, "seed": 1000}
    assert (
        comparison.run_name("papa_epochs", 3, 1) == "seed1-k3-papa_epochs"
        and comparison.run_method("papa_epochs") == "papa_epochs"
    )
    present = {"graft", "nograft", "papa_epochs", "dml"}.__contains__
    found = exploratory_contrasts(present, [])
    assert Contrast("papa_epochs", "mean", "nograft", "mean") in found
    # grafting against the rivals comes after every method against its baselines, in registry order
    rivals = [c for c in found if c.ours == "graft" and c.theirs in ("dml", "papa_epochs")]
    assert [c.theirs for c in rivals] == ["dml", "papa_epochs"] and found[-2:] == rivals
    assert not [c for c in exploratory_contrasts(present, []) if "papa" in (c.ours, c.theirs)]  # not compared


def test_the_rows_and_contrasts_of_the_registry_are_those_of_the_tables_they_replaced():
    from reidgraft.engine.comparison import COMPARE_METHODS, DEFAULT_METHODS, exploratory_contrasts

    assert DEFAULT_METHODS == (
        "single", "single_long", "nograft", "nograft_ensemble", "nograft_average", "graft", "graft_same_lr",
    )  # fmt: skip
    derived = {name: m.derived_from for name, m in COMPARE_METHODS.items() if m.derived_from}
    assert derived == {
        "nograft_ensemble": "nograft", "nograft_average": "nograft", "nograft_ema": "nograft",
        "nograft_model_stock": "nograft", "papa_average": "papa",
    }  # fmt: skip
    assert [name for name, m in COMPARE_METHODS.items() if m.needs_pretrained] == ["nograft_model_stock"]
    one_model = ["single", "single_long", "ema", "teacher"]
    assert [name for name, m in COMPARE_METHODS.items() if m.one_model] == one_model
    assert [name for name, m in COMPARE_METHODS.items() if m.same_for_every_k] == ["single", "ema", "teacher"]
    assert [name for name, m in COMPARE_METHODS.items() if m.distils] == ["kd", "graftplus"]
    names = [c.name for c in exploratory_contrasts(lambda method: True, ["v"])]
    reports = ("model0", "mean", "best_of_k")
    baselines = ("nograft", "nograft_ensemble", "nograft_average", "single")
    expected = [
        *(f"nograft_ema:{r}-nograft:{r}" for r in reports),
        "nograft_model_stock:model0-nograft_average:model0",
        *(f"graft:{r}-{theirs}:{r}" for theirs in baselines for r in reports),
        *(f"graft:{r}-nograft_model_stock:{r}" for r in reports),
        *(f"graft:{r}-single_long:model0" for r in reports),
        "graft_same_lr:model0-single:model0",
        *(f"{rival}:{r}-nograft:{r}" for rival in ("dml", "papa") for r in reports),
        "papa_average:model0-nograft_average:model0", "papa_average:model0-single:model0",
        "ema:model0-single:model0",
        *(f"kd:{r}-nograft:{r}" for r in reports),
        *(f"graftplus:{r}-{theirs}:{r}" for theirs in ("kd", "graft") for r in reports),
        *(f"average:{r}-nograft:{r}" for r in reports),
        "graft:best_of_k-dml:best_of_k", "graft:best_of_k-papa:best_of_k",
        "graft:mean-average:mean", "graft:best_of_k-average:best_of_k",
        *(f"v:{r}-nograft:{r}" for r in reports),
    ]  # fmt: skip
    assert names == expected


def test_average_is_graft_with_a_fixed_half_and_leaves_two_models_equal(task, tmp_path):
    """compare's `average`: graft's run with the entropy weighting replaced by alpha 0.5; at K = 2
    both models leave every graft as the same model (their mean)."""
    from reidgraft.engine import Trainer
    from reidgraft.engine.comparison import Comparison

    recipe = {"dataset": "synthetic", "root": task.config.root, "epochs": 1, "height": 32, "width": 16}
    comparison = Comparison(recipe, build_config(recipe), tmp_path, data=task.splits)
    mine, graft = (comparison.config(method, 2, 0).to_dict() for method in ("average", "graft"))
    assert {key for key in mine if mine[key] != graft[key]} == {"criterion", "output"}
    assert (mine["criterion"], mine["fixed_alpha"]) == ("fixed", 0.5)
    config = build_config(
        {**mine, "eval_after_graft": True, "batch_size": 8, "weights": "none", "device": "cpu"}
    )
    trainer = Trainer(config, task.splits, tmp_path / "average", log=lambda line: None)
    trainer.fit()
    alphas = trainer.history[-1]["alphas"]
    assert alphas and all(a == 0.5 for model in alphas for a in model.values())
    first, second = (member.model.state_dict() for member in trainer.members)
    for key, tensor in first.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(second[key], tensor, rtol=0, atol=0, msg=key)


def test_declared_secondaries_come_next_in_their_order_and_are_holm_adjusted_as_one_family():
    from reidgraft.engine.comparison import Contrast, contrasts
    from reidgraft.engine.intervals import holm, t_test_p

    scores = {
        ("graft", 2): per_seed_scores([[0.30, 0.34], [0.31, 0.33], [0.29, 0.35]], chosen="validation"),
        ("nograft", 2): per_seed_scores([[0.25, 0.36], [0.27, 0.34], [0.24, 0.37]], chosen="validation"),
        ("single", 2): per_seed_scores([[0.33], [0.32], [0.36]], one_value=True),
    }
    primary = Contrast("graft", "best_of_k", "nograft", "best_of_k")
    declared = (Contrast("graft", "mean", "single", "mean"), Contrast("graft", "model0", "nograft", "model0"))
    paired = contrasts(scores, [2], ("mAP", "rank1"), primary, (), declared)
    assert [(e["contrast"], e["metric"]) for e in paired[:6]] == [
        (primary.name, "mAP"), (primary.name, "rank1"),
        (declared[0].name, "mAP"), (declared[0].name, "rank1"),
        (declared[1].name, "mAP"), (declared[1].name, "rank1"),
    ]  # fmt: skip
    family = [e for e in paired if "p_holm" in e]
    assert [e["contrast"] for e in family] == [c.name for c in declared]
    assert all(e["secondary"] and e["holm_family"] == "declared secondaries, 2 contrasts" for e in family)
    assert [e["p_holm"] for e in family] == holm([t_test_p(e["per_seed"]) for e in family])
    assert "p_holm" not in paired[0] and paired[0]["p"] == t_test_p(paired[0]["per_seed"])
    rest = [e for e in paired[6:]]
    assert rest and not any(e.get("secondary") or "p_holm" in e for e in rest)  # raw p only
    assert all(e["p"] is not None for e in rest)
    # without declared ones, the family is every exploratory contrast on the primary metric
    undeclared = contrasts(scores, [2], ("mAP", "rank1"), primary)
    family = [e for e in undeclared if "p_holm" in e]
    assert {e["metric"] for e in family} == {"mAP"} and not any(e["primary"] for e in family)
    assert len(family) == len([e for e in undeclared if e["metric"] == "mAP"]) - 1
    assert family[0]["holm_family"] == f"exploratory, {len(family)} contrasts"


def test_kd_and_graftplus_distil_from_their_replicates_teacher_and_kd_at_weight_zero_is_nograft(
    task, tmp_path
):
    from reidgraft.engine import Trainer
    from reidgraft.engine.comparison import Comparison

    recipe = {
        "dataset": "synthetic", "root": task.config.root, "epochs": 1, "height": 32, "width": 16,
        "batch_size": 8, "weights": "none", "device": "cpu", "deterministic": True,
    }  # fmt: skip
    comparison = Comparison(recipe, build_config(recipe), tmp_path, data=task.splits)
    teacher = comparison.changes("teacher", 2, seed=3)
    assert (teacher["models"], teacher["population"], teacher["seed"]) == (1, "none", 3500)
    assert comparison.run_name("teacher", 2, 3) == "seed3-k1-teacher"
    for method, population in (("kd", "none"), ("graftplus", "graft")):
        changes = comparison.changes(method, 2, seed=3)
        assert changes["population"] == population and changes["seed"] == 3000
        assert changes["teacher"] == [f"{tmp_path / 'seed3-k1-teacher' / 'checkpoint.pt'}:0"]
    kd = comparison.run("kd", 2, 0)  # trains the replicate's teacher first
    assert (tmp_path / "seed0-k1-teacher" / "checkpoint.pt").is_file() and kd.run.count == 2
    # kd at weight 0 is nograft bit for bit: the distillation term adds nothing, draws nothing
    config = comparison.config("kd", 2, 0)
    runs = {}
    for name, changes in (("kd0", {"kd_weight": 0.0}), ("nograft", {"teacher": []})):
        settings = {**config.to_dict(), **changes, "output": str(tmp_path / name)}
        runs[name] = Trainer(build_config(settings), task.splits, tmp_path / name, log=lambda line: None)
        runs[name].fit()
    for a, b in zip(runs["kd0"].members, runs["nograft"].members, strict=True):
        for key, tensor in a.model.state_dict().items():
            assert torch.equal(tensor, b.model.state_dict()[key]), key


def test_nograft_ema_scores_the_copies_of_the_decay_best_on_validation(task, tmp_path):
    import json
    import statistics

    from reidgraft.engine.comparison import Comparison

    recipe = {
        "dataset": "synthetic", "root": task.config.root, "epochs": 2, "height": 32, "width": 16,
        "batch_size": 8, "weights": "none", "device": "cpu", "val_ids": 2, "eval_every": 1,
        "test_scoring": "last", "ema": 0.9, "ema_grid": [0.0], "ema_warmup": "unbiased",
    }  # fmt: skip
    comparison = Comparison(
        recipe, build_config(recipe), tmp_path, data=make_task(build_config(recipe), task.splits).splits
    )
    found = comparison.scores("nograft_ema", 2, 0)
    metrics = json.loads((tmp_path / "seed0-k2-nograft" / "metrics.json").read_text())
    last = metrics["epochs"][-1]
    means = {
        name: statistics.fmean(r["mAP"] for r in last[f"{name}_val_metrics"]) for name in ("ema", "ema_0")
    }
    chosen = max(means, key=lambda name: (means[name], name == "ema"))
    assert found["decay"] == metrics[chosen]["decay"] and found["chosen_on"] == "validation"
    # the reports are that copy's test scores: they average to the run's own final metrics of it
    final = metrics[chosen]["final"]
    assert float(np.mean(found["reports"]["model0"]["mAP"])) == pytest.approx(final[0]["mAP"], abs=1e-6)
    mean = (final[0]["mAP"] + final[1]["mAP"]) / 2
    assert float(np.mean(found["reports"]["mean"]["mAP"])) == pytest.approx(mean, abs=1e-6)


def test_the_recipes_ema_copies_ride_only_on_the_runs_whose_rows_score_them(task, tmp_path):
    from reidgraft.engine.comparison import Comparison

    recipe = {
        "dataset": "synthetic", "root": task.config.root, "epochs": 2, "height": 32, "width": 16,
        "weights": "none", "device": "cpu", "val_ids": 2,
        "ema": 0.9, "ema_grid": [0.5], "ema_warmup": "unbiased",
    }  # fmt: skip
    splits = make_task(build_config(recipe), task.splits).splits
    comparison = Comparison(recipe, build_config(recipe), tmp_path, data=splits)
    kept = comparison.config("nograft", 2, 0)
    assert (kept.ema, kept.ema_grid, kept.ema_warmup) == (0.9, [0.5], "unbiased")
    for method in ("graft", "average", "teacher", "kd", "dml"):
        config = comparison.config(method, 2, 0)
        assert (config.ema, config.ema_grid, config.ema_warmup) == (None, [], "none"), method
    own = comparison.config("ema", 2, 0)  # the one-model EMA row: its own decay, nothing of the recipe's
    assert (own.ema, own.ema_grid, own.ema_warmup) == (EMA_DECAY, [], "none")
