import pytest

from .tiny import TINY


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    from reidgraft.data.datasets import synthetic_splits

    return synthetic_splits(tmp_path_factory.mktemp("data"), **TINY)
