"""The CIFAR classifiers: published sizes, shapes, option-A shortcuts, one registry."""

import pytest
import torch

from reidgraft.models import backbone_names, build_backbone
from reidgraft.models.cifar import CifarResNet

# Published parameter counts for 10 classes (He et al. 2016 Table 6; Zagoruyko & Komodakis 2016),
# and the common CIFAR MobileNetV2's.
PUBLISHED = {
    "resnet20": 0.27e6,
    "resnet32": 0.46e6,
    "resnet56": 0.85e6,
    "resnet110": 1.7e6,
    "wrn28_10": 36.5e6,
    "mobilenetv2": 2.30e6,
}


def count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_the_published_one(name):
    assert count(build_backbone(name, 10)) == pytest.approx(PUBLISHED[name], rel=0.02)


@pytest.mark.parametrize("name", ["resnet32", "mobilenetv2"])
def test_logits_in_train_and_eval_mode(name):
    model = build_backbone(name, 100, seed=0)
    images = torch.randn(3, 3, 32, 32)
    assert model.train()(images).shape == (3, 100)
    assert model.eval()(images).shape == (3, 100)


def test_option_a_shortcuts_have_no_parameters_and_pad_with_zeros():
    model = CifarResNet(20, 10)
    assert not [name for name, _ in model.named_parameters() if "shortcut" in name]
    block = model.layer2[0]  # 16 -> 32 channels, stride 2
    x = torch.randn(2, 16, 8, 8)
    shortcut = block.shortcut(x)
    assert shortcut.shape == (2, 32, 4, 4)
    assert torch.equal(shortcut[:, 8:24], x[:, :, ::2, ::2])
    assert not shortcut[:, :8].any() and not shortcut[:, 24:].any()


def test_one_registry_seeded_and_checked():
    names = backbone_names()
    assert {"resnet50", "mobilenetv2_x1_0", "resnet56", "wrn28_10"} <= set(names)
    first, again = build_backbone("resnet56", 100, seed=3), build_backbone("resnet56", 100, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    other = build_backbone("resnet56", 100, seed=4)
    assert not torch.equal(first.conv1.weight, other.conv1.weight)
    with pytest.raises(ValueError, match="unknown backbone 'resnet57'; choose one of: .*resnet56"):
        build_backbone("resnet57", 10)
    with pytest.raises(ValueError, match="depth 6n\\+2"):
        CifarResNet(21, 10)
