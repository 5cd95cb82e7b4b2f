"""The preflight: names, the settings that depend on them, devices, precision, weights and the
data's presence, checked before any data is read."""

import pytest

from reidgraft.config import ConfigError, build_config
from reidgraft.engine.preflight import check_names


def test_unknown_transform_names_are_refused_before_any_data_is_read():
    with pytest.raises(
        ConfigError, match="unknown transform 'random_erasing' for re-ID; choose from random_flip"
    ):
        check_names(build_config(transforms=["random_flip", "random_erasing"]))
    with pytest.raises(ConfigError, match="unknown transform 'random_erase' for classification"):
        check_names(build_config(dataset="digits", arch="resnet20", transforms=["random_erase"]))
