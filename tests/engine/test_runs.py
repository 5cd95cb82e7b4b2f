"""Runs carried to their last epoch: which settings decide a run's result."""

from reidgraft.config import build_config


def test_a_run_saved_before_these_settings_existed_counts_as_their_defaults():
    from reidgraft.engine.runs import config_sha256

    now = build_config().to_dict()
    before = {name: value for name, value in now.items() if name not in ("loss", "bnneck", "sampler")}
    assert config_sha256(before) == config_sha256(now)
    assert config_sha256(before) != config_sha256(build_config(bnneck=True).to_dict())
