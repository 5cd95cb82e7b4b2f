"""Every population method, EMA, teachers, the strong recipe, classification and resumes give
exactly what the trainer gave before the methods became registered participants
(`method_digest.py`: weights, optimizer, scheduler and EMA state, epoch records, metrics.json and
the printed lines of tiny runs)."""

import json
from pathlib import Path

import pytest
import torch

from .method_digest import CASES, load_data, run_digest

EXPECTED = json.loads((Path(__file__).parent / "method_digests.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_data(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("case", list(CASES))
def test_every_method_gives_bit_for_bit_what_it_gave(data, tmp_path, case):
    if torch.get_num_threads() != EXPECTED["threads"]:
        pytest.skip(f"the digests were made with {EXPECTED['threads']} intra-op threads")
    assert run_digest(data, tmp_path, CASES[case]) == EXPECTED[case]
