import pytest
import torch
from torch import nn

from reidgraft.grafting import GraftRing, graft_filters, graft_state

from ..conftest import TinyNet, randomised

OPTIONS = dict(A=0.4, c=5.0)  # c small enough that alphas differ from layer to layer


def states_of(models):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in models]


def test_ring_of_three_uses_pre_graft_neighbours(tiny_nets):
    models = tiny_nets(3)
    before = states_of(models)
    alphas = GraftRing(models, **OPTIONS).graft()
    for k, model in enumerate(models):
        expected, expected_alphas = graft_state(before[k], before[k - 1], **OPTIONS)
        assert alphas[k] == expected_alphas
        for key, tensor in model.state_dict().items():
            assert torch.equal(tensor, expected[key]), (k, key)
    # Sequential semantics (model 0 then reading a grafted model K-1... ) would differ: model 0
    # grafted from the POST-graft model 2 is not what the ring produced.
    sequential, _ = graft_state(before[0], models[2].state_dict(), **OPTIONS)
    assert not torch.equal(sequential["stem.weight"], models[0].state_dict()["stem.weight"])


def test_two_models_end_identical(tiny_nets):
    models = tiny_nets(2)
    alphas = GraftRing(models, **OPTIONS).graft()
    assert alphas[0]["stem.weight"] + alphas[1]["stem.weight"] == pytest.approx(1.0)
    a, b = (m.state_dict() for m in models)
    for key in a:
        if a[key].is_floating_point():
            assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["norm.num_batches_tracked"], b["norm.num_batches_tracked"])


def test_single_model_is_untouched(tiny_nets):
    (model,) = tiny_nets(1)
    before = states_of([model])[0]
    assert GraftRing([model]).graft() == [{}]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_parameters_and_gradients_preserved(tiny_nets, dtype):
    models = [m.to(dtype) for m in tiny_nets(3)]
    params = [list(m.parameters()) for m in models]
    before = states_of(models)
    GraftRing(models, **OPTIONS).graft()
    for model, old_params, old in zip(models, params, before):
        assert all(p is q for p, q in zip(model.parameters(), old_params))
        assert all(p.dtype == dtype and p.requires_grad for p in model.parameters())
        assert not torch.equal(old["stem.weight"], model.stem.weight)


@pytest.mark.cuda
def test_cuda_models_stay_on_cuda(tiny_nets):
    models = [m.cuda() for m in tiny_nets(3)]
    before = states_of(models)
    GraftRing(models, **OPTIONS).graft()
    expected, _ = graft_state(before[1], before[0], **OPTIONS)
    for key, tensor in models[1].state_dict().items():
        assert tensor.is_cuda
        torch.testing.assert_close(tensor, expected[key])


def test_optimizer_state_is_untouched(tiny_nets):
    models = tiny_nets(2)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]
    for model, optimizer in zip(models, optimizers):
        model(torch.randn(2, 3, 6, 6)).sum().backward()
        optimizer.step()
    momenta = [
        {id(p): optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()}
        for model, optimizer in zip(models, optimizers)
    ]
    GraftRing(models, **OPTIONS).graft()
    for model, optimizer, saved in zip(models, optimizers, momenta):
        for p in model.parameters():
            assert p in optimizer.state  # still the very tensors the optimizer steps
            assert torch.equal(optimizer.state[p]["momentum_buffer"], saved[id(p)])


def test_different_architectures_fail_before_any_change():
    models = [randomised(TinyNet(), 1), randomised(TinyNet(), 2), randomised(TinyNet(width=6), 3)]
    before = states_of(models)
    with pytest.raises(ValueError, match=r"model 0 <- model 2\): key 'stem.weight' has shape"):
        GraftRing(models)
    for model, old in zip(models, before):
        assert all(torch.equal(old[k], v) for k, v in model.state_dict().items())


def test_architecture_changed_after_construction_fails_before_any_change(tiny_nets):
    models = tiny_nets(3)
    ring = GraftRing(models)
    models[1].head = nn.Linear(8, 7)
    before = states_of(models)
    with pytest.raises(ValueError, match="'head.weight' has shape"):
        ring.graft()
    for model, old in zip(models, before):
        assert all(torch.equal(old[k], v) for k, v in model.state_dict().items())


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(2, 2, 1)
        self.second = self.first  # the same weights under a second name


def test_tied_parameters_are_blended_once():
    models = [randomised(Tied(), s) for s in (1, 2)]
    before = states_of(models)
    GraftRing(models, **OPTIONS).graft()
    expected, _ = graft_state(before[0], before[1], **OPTIONS)
    assert torch.equal(models[0].first.weight, expected["first.weight"])


def test_filter_level_ring_matches_pairwise_filter_grafting(tiny_nets):
    models = tiny_nets(3)
    before = states_of(models)
    GraftRing(models, level="filter", fraction=0.5, **OPTIONS).graft()
    for k, model in enumerate(models):
        expected, _ = graft_filters(before[k], before[k - 1], fraction=0.5, **OPTIONS)
        for key, tensor in model.state_dict().items():
            assert torch.equal(tensor, expected[key]), (k, key)


def test_bad_options_are_rejected(tiny_nets):
    models = tiny_nets(2)
    with pytest.raises(ValueError, match="unknown grafting criterion 'x'"):
        GraftRing(models, criterion="x")
    with pytest.raises(ValueError, match="unknown grafting level"):
        GraftRing(models, level="channel")
    with pytest.raises(ValueError, match="at least one model"):
        GraftRing([])


def test_ring_learning_rates_are_cosine_spaced():
    from reidgraft.grafting import ring_learning_rates

    assert ring_learning_rates(1.0, 4) == pytest.approx([0.1464466, 0.5, 0.8535534, 1.0], abs=1e-7)
    assert ring_learning_rates(0.1, 2) == pytest.approx([0.05, 0.1])
    assert ring_learning_rates(3e-4, 1) == [3e-4]
