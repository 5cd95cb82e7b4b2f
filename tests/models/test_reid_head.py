"""The re-ID head as the strong baseline shapes it: BNNeck and last stride 1."""

import pytest
import torch

from reidgraft.config import ConfigError, build_config
from reidgraft.engine.preflight import check_names
from reidgraft.models.reid_head import BNNeckClassifier, build_reid_model


def test_bnneck_trains_on_the_pre_neck_feature_and_evaluates_on_the_post_neck_one():
    model = build_reid_model("resnet18", 5, seed=0, bnneck=True, with_features=True)
    assert isinstance(model.classifier, BNNeckClassifier)
    assert model.classifier.linear.bias is None and not model.classifier.neck.bias.requires_grad
    images = torch.randn(6, 3, 64, 32)
    model.train()
    logits, features = model(images)
    assert logits.shape == (6, 5) and features.shape == (6, 512)
    model.eval()
    with torch.no_grad():
        evaluated = model(images)
        pre_neck = model.global_avgpool(model.featuremaps(images)).flatten(1)  # what torchreid returns
        expected = model.classifier.neck(pre_neck)  # eval-mode BN: running statistics
    torch.testing.assert_close(evaluated, expected)
    assert not torch.allclose(evaluated, pre_neck)
    # a model rebuilt from the config behaves the same (the eval switch is not in the state_dict)
    rebuilt = build_reid_model("resnet18", 5, bnneck=True)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(images), evaluated)


def test_last_stride_one_doubles_the_final_map():
    plain = build_reid_model("resnet18", 5)
    strided = build_reid_model("resnet18", 5, last_stride=1)
    images = torch.randn(1, 3, 64, 32)
    assert plain.featuremaps(images).shape[-2:] == (2, 1)
    assert strided.featuremaps(images).shape[-2:] == (4, 2)
    with pytest.raises(ConfigError, match="last_stride 1 needs a backbone with a ResNet-style last stage"):
        check_names(build_config(arch="mobilenetv2_x1_0", last_stride=1))
