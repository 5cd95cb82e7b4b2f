"""Model Stock (compare's nograft_model_stock): the ratio by hand, the merge layer by layer, the head
without a common start averaged, and compare's refusal without pretrained weights."""

import math

import pytest
import torch
from torch import nn

from reidgraft.population.averaging import model_stock, model_stock_ratio


def test_the_ratio_by_hand():
    start = torch.tensor([0.0, 0.0])
    # moves (1, 0) and (1, 1): cos = 1 / sqrt(2); t = 2 cos / (1 + cos)
    cos = 1 / math.sqrt(2)
    assert model_stock_ratio([torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])], start) == pytest.approx(
        2 * cos / (1 + cos)
    )
    same = torch.tensor([3.0, -1.0])
    assert model_stock_ratio([same, same], start) == pytest.approx(1.0)  # cos 1: the mean itself
    assert model_stock_ratio([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])], start) == 0.0  # cos 0
    assert model_stock_ratio([torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.1])], start) == 0.0  # cos < 0
    assert model_stock_ratio([start, torch.tensor([1.0, 0.0])], start) == 1.0  # a layer that did not move
    # three models: the mean of the three pairwise cosines, t = 3 cos / (1 + 2 cos)
    three = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])]
    mean_cos = (cos + 0.0 + cos) / 3
    assert model_stock_ratio(three, start) == pytest.approx(3 * mean_cos / (1 + 2 * mean_cos))


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, images):
        return self.head(self.bn(self.conv(images)).mean((2, 3)))


def test_the_merge_layer_by_layer_with_the_head_averaged():
    torch.manual_seed(0)
    start_model = Small()
    start = {k: v.clone() for k, v in start_model.state_dict().items() if not k.startswith("head.")}
    # moves c + n and c - n, n orthogonal to c and half its length: cos = (1 - 1/4) / (1 + 1/4) = 0.6
    moves = {}
    for name, parameter in start_model.named_parameters():
        c, n = torch.randn_like(parameter).double(), torch.randn_like(parameter).double()
        n -= (n * c).sum() / (c * c).sum() * c
        n *= 0.5 * c.norm() / n.norm()
        moves[name] = (0.1 * (c + n)).float(), (0.1 * (c - n)).float()
    models = []
    for k, seed in enumerate((1, 2)):
        torch.manual_seed(seed)
        model = Small()
        model.load_state_dict({**model.state_dict(), **start})  # the head stays its own
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter.add_(moves[name][k])
        models.append(model)
    batches = [torch.randn(4, 3, 6, 6) for _ in range(2)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    merged, ratios = model_stock(models, start, batches)
    states = [m.state_dict() for m in models]
    for key in ("conv.weight", "conv.bias", "bn.weight", "bn.bias"):
        t = model_stock_ratio([s[key] for s in states], start[key])
        assert ratios[key] == t == pytest.approx(2 * 0.6 / 1.6, abs=1e-5)
        expected = start[key] + t * ((states[0][key] + states[1][key]) / 2 - start[key])
        torch.testing.assert_close(merged.state_dict()[key], expected)
    assert set(ratios) == {"conv.weight", "conv.bias", "bn.weight", "bn.bias"}  # no start: no ratio
    torch.testing.assert_close(
        merged.state_dict()["head.weight"], (states[0]["head.weight"] + states[1]["head.weight"]) / 2
    )
    # the statistics were estimated on the batches, not averaged; the inputs are untouched
    assert not merged.training and int(merged.bn.num_batches_tracked) == 2
    assert not torch.equal(
        merged.bn.running_mean, (states[0]["bn.running_mean"] + states[1]["bn.running_mean"]) / 2
    )
    for model, saved in zip(models, before, strict=True):
        assert all(torch.equal(tensor, saved[key]) for key, tensor in model.state_dict().items())
