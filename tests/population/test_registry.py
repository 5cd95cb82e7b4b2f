"""The registry of population methods and the participants' lifecycle: what the rest of
reidgraft reads from a spec, a method registered by a module and one entry alone, one numbering
of epoch ends on both orders, and a step loss honoured whatever batches a method reads."""

import pytest
import torch

from reidgraft.config import FIELDS, ConfigError
from reidgraft.engine import Trainer
from reidgraft.engine.distributed import check_distributed
from reidgraft.engine.runs import default_output
from reidgraft.population import POPULATIONS, PopulationSpec
from reidgraft.population.participant import Participant
from reidgraft.population.registry import describe_run

from .tiny import config


def test_every_field_of_a_method_names_a_registered_one():
    owners = {f.metadata["method"] for f in FIELDS.values() if "method" in f.metadata}
    assert owners <= set(POPULATIONS) and owners >= {"graft", "dml", "papa"}
    assert FIELDS["population"].metadata["choices"] is POPULATIONS
    for name in POPULATIONS:  # the help says what each one is
        assert f"{name} (" in FIELDS["population"].metadata["help"]


@pytest.mark.parametrize(
    "settings, described, folder",
    [
        (dict(population="graft"), "grafted", "-k2-2"),
        (dict(population="none"), "independent", "-k2-nograft-"),
        (dict(population="papa", papa_mode="pairs", ema=0.99), "PAPA pairs, EMA 0.99", "-k2-papa-"),
        (dict(population="graft", models=1, ema=0.5), "baseline, EMA 0.5", "-k1-2"),
    ],
)
def test_a_run_is_described_and_named_by_its_specs(settings, described, folder):
    assert describe_run(config(**settings)) == described
    assert folder in default_output(config(**settings))


def test_what_runs_in_one_process_is_refused_under_torchrun_by_its_spec():
    with pytest.raises(ConfigError, match="--population dml trains its K models in one process"):
        check_distributed(config(population="dml"))
    with pytest.raises(ConfigError, match="--ema runs in one process"):
        check_distributed(config(ema=0.9))
    check_distributed(config(population="none"))


@pytest.fixture
def scratch(monkeypatch):
    spec = PopulationSpec(
        "tests.population.scratch_method", help="every model the mean", label="averaged", min_models=2,
        distributed=False,
    )  # fmt: skip
    monkeypatch.setitem(POPULATIONS, "scratch_average", spec)
    return spec


def test_a_method_registered_by_one_module_and_one_entry_trains(splits, tmp_path, scratch):
    lines = []
    trainer = Trainer(config(population="scratch_average", epochs=3), splits, tmp_path, log=lines.append)
    trainer.fit()
    (method,) = trainer.participants
    assert method.calls == [1, 2]  # after epochs 1 and 2, none after the last
    assert [record.get("averaged") for record in trainer.history] == [[0, 1], [0, 1], None]
    assert "averaged after epoch 1" in lines and "averaged after epoch 2" in lines
    assert trainer.metrics_file()["population"] == {"method": "scratch_average"}
    assert describe_run(trainer.config) == "averaged" and "-k2-scratch_average-" in default_output(
        trainer.config
    )
    with pytest.raises(ConfigError, match="population scratch_average needs at least 2 models"):
        config(population="scratch_average", models=1)
    with pytest.raises(ConfigError, match="--population scratch_average trains its K models in one process"):
        check_distributed(trainer.config)


class Recorder(Participant):
    """Records when the trainer calls it; adds 1 to every loss (a constant: no gradient)."""

    name = section = "recorder"

    def __init__(self):
        self.exchanged, self.seen = [], []

    def settings(self):
        return {}

    def step_loss(self, k, logits):
        self.seen.append([j for j, value in enumerate(logits) if value is not None])
        return torch.tensor(1.0)

    def exchanges_after(self, completed):
        return True

    def exchange(self, completed):
        self.exchanged.append(completed)


@pytest.mark.parametrize("after", [False, True], ids=["authors-order", "eval-after-graft"])
def test_epoch_ends_are_numbered_by_the_epochs_completed_on_both_orders(splits, tmp_path, after):
    trainer = Trainer(config(epochs=3, eval_after_graft=after), splits, tmp_path, log=lambda line: None)
    recorder = Recorder()
    trainer.participants.append(recorder)
    trainer.fit()
    assert recorder.exchanged == ([1, 2, 3] if after else [1, 2])  # (no exchange after the last, by default)


def test_a_step_loss_counts_whatever_batches_the_method_reads(splits, tmp_path):
    # (one after another, as the trainer steps a run whose participant adds a loss term; this
    # one is appended after the trainer planned how its models step)
    settings = dict(population="none", epochs=1, parallel_models="none")
    plain = Trainer(config(**settings), splits, tmp_path / "plain", log=lambda line: None)
    plain.fit()
    counted = Trainer(config(**settings), splits, tmp_path / "counted", log=lambda line: None)
    recorder = Recorder()
    counted.participants.append(recorder)
    counted.fit()
    # each model's term saw its own batch's logits alone (the other model read other images)
    assert recorder.seen and all(seen in ([0], [1]) for seen in recorder.seen)
    assert recorder.seen[:2] == [[0], [1]]
    for mine, theirs in zip(counted.history[0]["loss"], plain.history[0]["loss"], strict=True):
        assert mine == pytest.approx(theirs + 1.0, abs=1e-6)
    for a, b in zip(plain.members, counted.members, strict=True):  # a constant term moves no weight
        for key, tensor in a.model.state_dict().items():
            torch.testing.assert_close(b.model.state_dict()[key], tensor, rtol=0, atol=0, msg=key)
