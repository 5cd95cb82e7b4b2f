"""Grafting through the population interface gives exactly what the trainer gave before it
(`graft_digest.py`: weights, optimizer state, losses, alphas and metrics of two tiny runs)."""

import json
from pathlib import Path

import pytest
import torch

from .graft_digest import CASES, TINY, run_digest

EXPECTED = json.loads((Path(__file__).parent / "graft_digests.json").read_text())


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    from reidgraft.data.datasets import synthetic_splits

    return synthetic_splits(tmp_path_factory.mktemp("data"), **TINY)


@pytest.mark.parametrize("case", sorted(CASES))
def test_grafted_runs_are_bit_for_bit_what_they_were(splits, tmp_path, case):
    if torch.get_num_threads() != EXPECTED["threads"]:
        pytest.skip(f"the digests were made with {EXPECTED['threads']} intra-op threads")
    assert run_digest(splits, tmp_path / case, **CASES[case]) == EXPECTED[case]
