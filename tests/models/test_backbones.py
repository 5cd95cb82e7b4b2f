import pytest
import torch

from reidgraft.models import backbone_names, build_backbone


def test_seeded_backbones_are_reproducible_and_distinct():
    a, b, c = (build_backbone("mobilenetv2_x1_0", 4, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.conv1.conv.weight, b.conv1.conv.weight)
    assert not torch.equal(a.conv1.conv.weight, c.conv1.conv.weight)
    assert a.classifier.out_features == 4


def test_unknown_backbone_and_download_are_refused():
    assert {"resnet50", "mobilenetv2_x1_0", "osnet_x1_0"} <= set(backbone_names())
    with pytest.raises(ValueError, match="unknown backbone 'resnet5'; choose one of: resnet18"):
        build_backbone("resnet5", 4)
    with pytest.raises(ValueError, match="local file"):
        build_backbone("resnet50", 4, pretrained=True)
