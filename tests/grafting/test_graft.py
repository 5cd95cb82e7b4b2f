import math

import numpy as np
import pytest
import torch

from reidgraft.grafting import (
    adaptive_alpha,
    entry_alphas,
    filter_entropy_sum,
    graft_state,
    head_keys,
    l1_norm,
    scored_keys,
)
from reidgraft.models.reid_head import build_reid_model

from ..conftest import TinyNet, randomised


def numpy_layer_entropy(t: torch.Tensor) -> float:
    values = t.detach().double().numpy().ravel()
    counts, _ = np.histogram(values, bins=10, range=(values.min(), values.max()))
    p = counts[counts > 0] / values.size
    return float(-(p * np.log(p)).sum())


# Expected alpha source for every floating key of TinyNet, written out by hand (docs/method.md section 3):
# the leading BN uses 0.5; the stem conv (key without "conv") scores itself, its bias and the
# BN after it inherit; the block conv scores itself and the BN and linear head inherit.
EXPECTED_SOURCE = {
    "pre.weight": None, "pre.bias": None, "pre.running_mean": None, "pre.running_var": None,
    "stem.weight": "stem.weight", "stem.bias": "stem.weight",
    "norm.weight": "stem.weight", "norm.bias": "stem.weight",
    "norm.running_mean": "stem.weight", "norm.running_var": "stem.weight",
    "block.0.weight": "block.0.weight", "block.0.bias": "block.0.weight",
    "block.1.weight": "block.0.weight", "block.1.bias": "block.0.weight",
    "block.1.running_mean": "block.0.weight", "block.1.running_var": "block.0.weight",
    "head.weight": "block.0.weight", "head.bias": "block.0.weight",
}  # fmt: skip


@pytest.fixture
def pair(tiny_nets):
    own, other = tiny_nets(2)
    return own.state_dict(), other.state_dict()


def test_scored_keys_are_found_by_shape_not_name(pair):
    own, _ = pair
    assert scored_keys(own) == ["stem.weight", "block.0.weight"]


def test_alpha_inheritance_and_blend_match_hand_computation(pair):
    own, other = pair
    A, c = 0.4, 5.0
    new, alphas = graft_state(own, other, A=A, c=c)
    expected_scored = {
        key: adaptive_alpha(numpy_layer_entropy(own[key]), numpy_layer_entropy(other[key]), A, c)
        for key in ("stem.weight", "block.0.weight")
    }
    assert alphas == pytest.approx(expected_scored, abs=1e-12)
    # The two layers must get different alphas, or the inheritance test proves nothing.
    assert abs(alphas["stem.weight"] - alphas["block.0.weight"]) > 1e-3
    for key, source in EXPECTED_SOURCE.items():
        alpha = 0.5 if source is None else expected_scored[source]
        expected = alpha * own[key].double() + (1 - alpha) * other[key].double()
        torch.testing.assert_close(new[key].double(), expected, rtol=0, atol=1e-6, msg=key)
    assert entry_alphas(own, alphas) == pytest.approx(
        {k: 0.5 if s is None else alphas[s] for k, s in EXPECTED_SOURCE.items()}
    )


def test_integer_buffers_keep_own_value(pair):
    own, other = pair
    own["norm.num_batches_tracked"].fill_(7)
    other["norm.num_batches_tracked"].fill_(100)
    new, _ = graft_state(own, other)
    assert new["norm.num_batches_tracked"].item() == 7
    assert new["norm.num_batches_tracked"].dtype == torch.long


def test_inputs_are_not_modified_and_result_shares_no_memory(pair):
    own, other = pair
    before = [{k: v.clone() for k, v in s.items()} for s in (own, other)]
    new, _ = graft_state(own, other)
    for state, copy in zip((own, other), before):
        assert all(torch.equal(state[k], copy[k]) for k in state)
    for key in new:
        new[key].add_(1)
    assert all(torch.equal(own[k], before[0][k]) for k in own)


def test_fixed_half_is_plain_averaging_everywhere(pair):
    own, other = pair
    new, alphas = graft_state(own, other, criterion="fixed", fixed_alpha=0.5)
    assert alphas == {"stem.weight": 0.5, "block.0.weight": 0.5}
    for key, tensor in own.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(new[key], (tensor + other[key]) / 2)


def test_fixed_alpha_applies_to_every_floating_entry(pair):
    own, other = pair
    new, _ = graft_state(own, other, criterion="fixed", fixed_alpha=0.8)
    for key in ("pre.running_mean", "stem.weight", "head.bias"):
        torch.testing.assert_close(new[key], 0.8 * own[key] + 0.2 * other[key])


@pytest.mark.parametrize(
    "criterion, scorer, c",
    [("l1", l1_norm, 0.05), ("entropy_filter_sum", filter_entropy_sum, 2.0)],
)
def test_other_criteria_score_with_their_own_measure(pair, criterion, scorer, c):
    own, other = pair
    _, alphas = graft_state(own, other, criterion=criterion, c=c)
    for key, alpha in alphas.items():
        assert alpha == pytest.approx(adaptive_alpha(scorer(own[key]), scorer(other[key]), 0.4, c))


def test_leaving_the_head_out_keeps_it_and_allows_other_class_counts():
    own = randomised(TinyNet(classes=5), 1).state_dict()
    other = randomised(TinyNet(classes=9), 2).state_dict()
    with pytest.raises(ValueError, match="'head.weight' has shape"):
        graft_state(own, other)
    new, _ = graft_state(own, other, graft_head=False)
    assert torch.equal(new["head.weight"], own["head.weight"])
    assert torch.equal(new["head.bias"], own["head.bias"])
    assert not torch.equal(new["block.1.bias"], own["block.1.bias"])


def test_head_keys_of_a_net_without_head_raise_when_asked_to_skip():
    conv_only = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    state = conv_only.state_dict()
    assert head_keys(state) == set()
    with pytest.raises(ValueError, match="no classifier head"):
        graft_state(state, state, graft_head=False)


def test_mismatched_keys_name_the_first_offending_key(pair):
    own, other = pair
    renamed = {("stem.kernel" if k == "stem.weight" else k): v for k, v in other.items()}
    with pytest.raises(ValueError, match="'stem.weight'.*'stem.kernel'"):
        graft_state(own, renamed)
    missing = {k: v for k, v in other.items() if not k.startswith("head.")}
    with pytest.raises(ValueError, match="'head.weight' is only in the own state"):
        graft_state(own, missing)


def test_mismatched_shapes_and_dtypes_name_the_key(pair):
    own, _ = pair
    wider = randomised(TinyNet(width=6), 3).state_dict()
    with pytest.raises(ValueError, match="'stem.weight' has shape"):
        graft_state(own, wider)
    halved = dict(own)
    halved["block.1.running_var"] = own["block.1.running_var"].half()
    with pytest.raises(ValueError, match="'block.1.running_var' has dtype"):
        graft_state(own, halved)


def test_unknown_criterion_lists_the_valid_ones(pair):
    with pytest.raises(ValueError, match="entropy, entropy_filter_sum, l1, fixed"):
        graft_state(*pair, criterion="entropi")


def test_nan_weights_name_the_layer(pair):
    own, other = pair
    other = dict(other)
    other["block.0.weight"] = other["block.0.weight"].clone()
    other["block.0.weight"][0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="'block.0.weight'.*NaN"):
        graft_state(own, other)


def test_bnneck_and_classifier_take_the_last_convolutions_alpha():
    """docs/method.md section 3: entries after the last scored tensor use its alpha."""
    own = build_reid_model("resnet18", 5, seed=0, bnneck=True).state_dict()
    other = build_reid_model("resnet18", 5, seed=1, bnneck=True).state_dict()
    blended, alphas = graft_state(own, other)
    last_conv = scored_keys(own)[-1]
    alpha = alphas[last_conv]
    for key in ("classifier.neck.weight", "classifier.neck.running_mean", "classifier.linear.weight"):
        torch.testing.assert_close(blended[key], alpha * own[key] + (1 - alpha) * other[key])
    assert blended["classifier.neck.num_batches_tracked"] == own["classifier.neck.num_batches_tracked"]
