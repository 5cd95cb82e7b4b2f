"""Runs carried to their last epoch: which settings decide a run's result."""

from reidgraft.config import build_config


def test_a_run_saved_before_these_settings_existed_counts_as_their_defaults():
    from reidgraft.engine.runs import config_sha256

    now = build_config().to_dict()
    before = {name: value for name, value in now.items() if name not in ("loss", "bnneck", "sampler")}
    assert config_sha256(before) == config_sha256(now)
    assert config_sha256(before) != config_sha256(build_config(bnneck=True).to_dict())


def copied_run(tiny_run, tmp_path):
    """A copy of the shared tiny run and its config pointed at the copy."""
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    saved = torch.load(run / "checkpoint.pt", weights_only=False, map_location="cpu")["config"]
    return run, build_config(saved, output=str(run))


def test_a_finished_run_is_reused_only_on_the_data_it_was_trained_on(tmp_path):
    """The same recipe on a dataset regenerated under the same root is refused, by name."""
    import shutil

    import pytest

    from reidgraft.config import ConfigError
    from reidgraft.data.datasets import synthetic_splits
    from reidgraft.engine.runs import finish_run

    sizes = {"train_ids": 8, "test_ids": 6, "distractors": 6, "height": 32, "width": 16}
    data = synthetic_splits(tmp_path, images_per_id=6, **sizes)
    config = build_config(
        dataset="synthetic", root=str(tmp_path), models=2, epochs=1, batch_size=8, height=32, width=16,
        optimizer="sgd", lr=0.01, device="cpu", output=str(tmp_path / "run"),
    )  # fmt: skip
    assert finish_run(config, data, log=lambda line: None)[1] == "trained"
    assert finish_run(config, data, log=lambda line: None)[1] == "reused"
    stamp = (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns
    shutil.rmtree(tmp_path / "synthetic")
    other = synthetic_splits(tmp_path, images_per_id=5, **sizes)
    with pytest.raises(ConfigError) as refused:
        finish_run(config, other, log=print)
    (line,) = str(refused.value).splitlines()
    assert f"{tmp_path / 'run'} was trained on other data than this: " in line
    assert "40 train images (the run had 48)" in line
    assert line.endswith("point --root at that run's data, or use another --output")
    assert (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns == stamp  # nothing retrained


def test_a_run_of_another_method_version_is_not_reused(tiny_run, tmp_path, monkeypatch):
    import pytest

    from reidgraft.config import ConfigError
    from reidgraft.data.datasets import synthetic_splits
    from reidgraft.engine import run_dir
    from reidgraft.engine.runs import finish_run

    run, config = copied_run(tiny_run, tmp_path)
    data = synthetic_splits(config.root, train_ids=8, test_ids=6, images_per_id=6, distractors=6,
                            height=32, width=16)  # fmt: skip
    monkeypatch.setattr(run_dir, "METHOD_VERSION", run_dir.METHOD_VERSION + 1)
    with pytest.raises(ConfigError) as refused:
        finish_run(config, data, log=print)
    assert str(refused.value) == (
        f"{run} was trained by version {run_dir.METHOD_VERSION - 1} of reidgraft's training method, "
        f"this is version {run_dir.METHOD_VERSION}: its weights are not what this version trains; "
        "use another --output, or delete that run"
    )


def test_a_whole_number_in_a_real_valued_field_is_the_same_setting():
    """A run trained with c: 5 (an int from Python or an old variant) is the run c = 5.0 asks for."""
    from reidgraft.engine.runs import config_sha256

    assert config_sha256({"c": 5}) == config_sha256({"c": 5.0}) != config_sha256({"c": 6.0})
    assert config_sha256({"epochs": 4}) != config_sha256({"epochs": 4.0})  # an int field stays an int
    assert config_sha256({"amp": True}) != config_sha256({"amp": 1.0})
