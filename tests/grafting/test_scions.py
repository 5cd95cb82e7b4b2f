import pytest
import torch

from reidgraft.grafting import (
    adaptive_alpha,
    filter_entropies,
    graft_filters,
    graft_internal,
    graft_noise,
)


def layered_state(values):
    """A state with one conv whose filter j is the constant values[j] (L1 = 18 * values[j])."""
    weight = torch.stack([torch.full((2, 3, 3), float(v)) for v in values])
    return {"conv.weight": weight, "conv.bias": torch.zeros(len(values))}


def test_noise_goes_only_into_filters_under_the_threshold():
    weight = torch.randn(6, 64, 16, 16, generator=torch.Generator().manual_seed(0))
    weight[[1, 4]] = 1e-7  # L1 far below 0.1
    state = {"conv.weight": weight}
    epoch = 10
    new, counts = graft_noise(state, epoch=epoch, generator=torch.Generator().manual_seed(1))
    assert counts == {"conv.weight": 2}
    for j in (0, 2, 3, 5):
        assert torch.equal(new["conv.weight"][j], weight[j])
    added = new["conv.weight"][[1, 4]] - weight[[1, 4]]
    assert added.std().item() == pytest.approx(0.975**epoch, rel=0.02)
    assert abs(added.mean().item()) < 0.01
    assert torch.equal(state["conv.weight"], weight)  # input untouched


def test_noise_is_reproducible_with_a_seeded_generator():
    state = layered_state([0.0, 0.0, 1.0])
    a, _ = graft_noise(state, epoch=0, generator=torch.Generator().manual_seed(5))
    b, _ = graft_noise(state, epoch=0, generator=torch.Generator().manual_seed(5))
    c, _ = graft_noise(state, epoch=0, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a["conv.weight"], b["conv.weight"])
    assert not torch.equal(a["conv.weight"], c["conv.weight"])


def test_internal_scions_add_the_jth_largest_to_the_jth_smallest():
    # L1 norms: 18 * (0.002, 1, 0.001, 2, 0.5) -> invalid under 0.1: filters 2 and 0.
    state = layered_state([0.002, 1.0, 0.001, 2.0, 0.5])
    new, counts = graft_internal(state, threshold=0.1)
    assert counts == {"conv.weight": 2}
    got = new["conv.weight"][:, 0, 0, 0].tolist()
    # smallest (filter 2) + largest (filter 3); second smallest (filter 0) + second largest (1).
    assert got == pytest.approx([0.002 + 1.0, 1.0, 0.001 + 2.0, 2.0, 0.5])


def test_internal_scions_never_take_an_invalid_donor():
    new, counts = graft_internal(layered_state([0.001, 0.002, 0.003]), threshold=0.1)
    assert counts == {"conv.weight": 0}
    new, counts = graft_internal(layered_state([0.001, 0.002, 0.003, 1.0]), threshold=0.1)
    assert counts == {"conv.weight": 1}
    assert new["conv.weight"][:, 0, 0, 0].tolist() == pytest.approx([1.001, 0.002, 0.003, 1.0])


def test_filter_level_grafting_changes_only_the_lowest_entropy_filters():
    g = torch.Generator().manual_seed(2)
    own = {"conv.weight": torch.randn(10, 4, 3, 3, generator=g), "bn.weight": torch.ones(10)}
    other = {"conv.weight": torch.randn(10, 4, 3, 3, generator=g), "bn.weight": torch.zeros(10)}
    own["conv.weight"][[3, 7]] = torch.tensor(0.5)  # constant filters: entropy 0, rootstocks
    new, alphas = graft_filters(own, other, fraction=0.2, c=5.0)
    h_own = filter_entropies(own["conv.weight"])
    h_other = filter_entropies(other["conv.weight"])
    for j in range(10):
        if j in (3, 7):
            alpha = adaptive_alpha(h_own[j].item(), h_other[j].item(), 0.4, 5.0)
            expected = alpha * own["conv.weight"][j] + (1 - alpha) * other["conv.weight"][j]
            assert alpha < 0.5  # the poorer filter takes more from its neighbour
            torch.testing.assert_close(new["conv.weight"][j], expected)
        else:
            assert torch.equal(new["conv.weight"][j], own["conv.weight"][j])
    assert torch.equal(new["bn.weight"], own["bn.weight"])
    assert set(alphas) == {"conv.weight"}


def test_filter_level_rejects_layer_only_criteria():
    state = layered_state([1.0, 2.0])
    with pytest.raises(ValueError, match="filter-level grafting supports criteria entropy, fixed"):
        graft_filters(state, state, criterion="l1")
