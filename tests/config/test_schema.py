"""The schema: every field's metadata (help, group, role, task, minimum), and the policies read
from it (resume, comparison reuse, settings of the other task)."""

import dataclasses

import pytest

from reidgraft.config import (
    FIELDS,
    GROUPS,
    ConfigError,
    TrainConfig,
    build_config,
    check_task_fields,
    field_names,
    identity_fields,
    resumable_fields,
    runtime_fields,
)


def test_every_field_has_help_a_group_a_role_and_a_task():
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"].strip(), f.name
        assert f.metadata["group"] in GROUPS, f.name
        assert f.metadata["role"] in ("identity", "result", "runtime"), f.name
        assert f.metadata["task"] in ("reid", "classification", "any"), f.name


def test_the_resume_policy_comes_from_the_roles():
    assert identity_fields() == ["dataset", "arch", "models"]
    # runtime settings may change when a run continues, but the run keeps its own folder
    assert runtime_fields() == {
        "output", "workers", "download", "ring_timeout", "eval_batch_size", "parallel_models", "image_cache"
    }  # fmt: skip
    assert resumable_fields() == (runtime_fields() - {"output"}) | {
        "epochs",
        "device",
        "eval_every",
        "test_scoring",
        "deterministic",
    }
    assert not resumable_fields() & set(identity_fields())


def test_tasks_mark_the_settings_of_one_task():
    assert {"loss", "sampler", "bnneck", "last_stride", "center_loss_weight", "metric_protocol"} <= set(
        field_names(task="reid")
    )
    assert field_names(task="classification") == ["download"]


@pytest.mark.parametrize("name, value", [("bnneck", True), ("metric", "cosine"), ("height", 32)])
def test_a_reid_setting_is_refused_for_classification(name, value):
    check_task_fields(build_config(dataset="digits", arch="resnet20"), "classification")
    config = build_config(dataset="digits", arch="resnet20", **{name: value})
    with pytest.raises(ConfigError, match=f"{name} is a re-ID setting; digits is a classification dataset"):
        check_task_fields(config, "classification")


def test_a_classification_setting_is_refused_for_reid():
    with pytest.raises(
        ConfigError, match="download is a classification setting; synthetic is a re-ID dataset"
    ):
        check_task_fields(build_config(download=True), "reid")


def test_minimums_come_from_the_metadata():
    for name, f in FIELDS.items():
        minimum = f.metadata.get("minimum")
        if minimum is None:
            continue
        bound = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        with pytest.raises(ConfigError, match=f"{name} {bound}, got {minimum - 1}"):
            build_config(**{name: minimum - 1})
