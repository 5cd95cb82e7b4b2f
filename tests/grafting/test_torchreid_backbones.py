"""The engine on the real backbones the re-ID track trains (pretrained=False: no download)."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from reidgraft.grafting import GraftRing, head_keys, scored_keys
from reidgraft.models import build_backbone


@pytest.mark.parametrize("arch", ["resnet50", "mobilenetv2_x1_0"])
def test_torchreid_backbones_graft(arch):
    models = [build_backbone(arch, 11, seed=seed) for seed in (0, 1)]
    state = models[0].state_dict()
    # Found by shape, they must be exactly the convolution modules found by type.
    convs = [
        f"{name}.weight" for name, m in models[0].named_modules() if isinstance(m, nn.modules.conv._ConvNd)
    ]
    assert scored_keys(state) == convs and len(convs) > 50
    assert head_keys(state) == {"classifier.weight", "classifier.bias"}
    alphas = GraftRing(models).graft()
    assert list(alphas[0]) == convs
    assert all(0.3 <= a <= 0.7 for a in alphas[0].values())
    a, b = (m.state_dict() for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    models[0].eval()
    with torch.no_grad():
        features = models[0](torch.randn(2, 3, 64, 32))
    assert torch.isfinite(features).all()


def test_grafting_package_imports_torch_alone():
    code = (
        "import sys, reidgraft.grafting; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torchreid', 'torchvision', 'faiss', 'gradio', 'yaml', 'cv2', 'scipy'}); "
        "ours = sorted(m for m in sys.modules if m.startswith('reidgraft.') "
        "and not m.startswith('reidgraft.grafting')); print(bad + ours)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
