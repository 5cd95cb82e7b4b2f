"""The checks of a config's values: one line naming the field, before any work."""

import dataclasses

import pytest

from reidgraft.config import ConfigError, TrainConfig, build_config


def test_grafting_options_are_checked_with_the_engine_rules():
    with pytest.raises(ConfigError, match="unknown grafting criterion 'entropi'; choose one of: entropy"):
        build_config(criterion="entropi")
    with pytest.raises(ConfigError, match="A must lie in"):
        build_config(A=2.0)
    assert build_config(c=5.0).graft_options()["c"] == 5.0


def test_choices_come_from_the_metadata():
    with pytest.raises(ConfigError, match="unknown metric 'manhattan'; choose one of: euclidean, cosine"):
        build_config(metric="manhattan")
    for f in dataclasses.fields(TrainConfig):
        if "choices" in f.metadata:
            default = getattr(TrainConfig(), f.name)
            defaults = default if isinstance(default, list) else [default]
            assert set(defaults) <= set(f.metadata["choices"]), f.name
    with pytest.raises(ConfigError, match="unknown loss 'arcface'; choose one of: softmax, triplet"):
        build_config(loss=["softmax", "arcface"])


@pytest.mark.parametrize("name", ["lr", "momentum", "A", "kd_tau", "ring_timeout"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_numbers_are_refused_before_any_work(name, value):
    with pytest.raises(ConfigError, match=f"{name} must be a finite number, got {value}"):
        build_config(**{name: value})


def test_triplet_with_the_random_sampler_is_refused():
    with pytest.raises(ConfigError, match="loss triplet needs --sampler identity"):
        build_config(loss=["softmax", "triplet"])
