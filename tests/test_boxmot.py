"""`export --for boxmot`: boxmot's own re-ID backend classes load the file as it is (no patches,
no renaming) and give FeatureExtractor's features of the same crops, resized as boxmot resizes
them (OpenCV's INTER_LINEAR). Needs the `tracking` extra (boxmot), which CI installs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import reidgraft

boxmot = pytest.importorskip("boxmot", reason="boxmot is not installed: pip install -e '.[tracking]'")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_installs(monkeypatch):
    """boxmot pip-installs a runtime it finds missing or of another version; a test must never
    change the environment, so that fails instead (the `tracking` extra pins what boxmot wants)."""
    from boxmot.utils.checks import RequirementsChecker

    def refuse(self, missing, extra_args=None):
        raise AssertionError(f"boxmot wanted to install {missing}: pin them in the tracking extra")

    monkeypatch.setattr(RequirementsChecker, "_install_packages", refuse)


def export_for_boxmot(run, output: Path, fmt: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "export.py"), str(run), "--format", fmt, "--for", "boxmot",
         "--model", "1", "--output", str(output)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def painted_frame(seed: int = 7) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (9, 9), 3)  # BGR


@pytest.mark.parametrize(
    "fmt, name", [("onnx", "m.onnx"), ("openvino", "m.xml"), ("torchscript", "m.torchscript")]
)
def test_boxmot_loads_the_export_and_gets_feature_extractors_features(lively_run, tmp_path, fmt, name):
    from boxmot.reid.backends.registry import get_backend_class
    from boxmot.reid.core.formats import resolve_reid_format

    output = tmp_path / name
    result = export_for_boxmot(lively_run, output, fmt)
    assert result.returncode == 0, result.stderr
    assert "FutureWarning" not in result.stderr  # (torch.jit's deprecation notices are ours to silence)
    sidecar = json.loads((tmp_path / f"{name}.metadata.json").read_text())
    assert sidecar["model_name"] == "mobilenetv2_x1_0" and sidecar["img_size"] == [32, 16]

    backend_class = get_backend_class(resolve_reid_format(output))  # boxmot picks it by the file name
    backend = backend_class(weights=output, device=torch.device("cpu"), half=False)
    assert tuple(backend.input_shape) == (32, 16)  # from the sidecar (boxmot's default is 256 x 128)
    frame = painted_frame()
    # x1 y1 x2 y2: one crop at the model's size, one at 4x, two of other shapes, one past the frame
    boxes = np.array([[10, 20, 26, 52], [0, 0, 64, 128], [100, 200, 115, 240], [50, 50, 250, 290],
                      [380, 250, 420, 330]], float)  # fmt: skip
    got = backend.get_features(boxes, frame)  # boxmot cuts, resizes, normalises and batches them

    clipped = [frame[max(0, int(y1)) : int(y2), max(0, int(x1)) : int(x2)] for x1, y1, x2, y2 in boxes]
    as_boxmot = reidgraft.FeatureExtractor(lively_run, model=1, device="cpu", amp="none", resize="cv2")
    expected = as_boxmot(clipped, bgr=True)
    assert got.shape == expected.shape == (5, as_boxmot.dim)
    assert (got * expected).sum(axis=1).min() > 0.9999

    evaluation = reidgraft.FeatureExtractor(lively_run, model=1, device="cpu", amp="none")(clipped, bgr=True)
    agreement = (got * evaluation).sum(axis=1)
    assert agreement[0] > 0.9999  # at the model's own size no resize happens: evaluation's features
    assert agreement[1] < 0.9999  # at 4x OpenCV's resize is not evaluation's (PIL's, antialiased)


def test_a_boxmot_tracker_runs_on_the_export(lively_run, tmp_path):
    from boxmot import BotSort

    output = tmp_path / "m.onnx"
    assert export_for_boxmot(lively_run, output, "onnx").returncode == 0
    tracker = BotSort(reid_weights=output, device="cpu", half=False)
    detections = np.array([[10, 20, 26, 52, 0.9, 0], [50, 50, 250, 290, 0.8, 0]], np.float32)
    frame = painted_frame()
    for _ in range(3):
        tracks = tracker.update(detections, frame)
    assert len(tracks) == 2 and sorted(tracks[:, 4]) == [0, 1]  # two tracks, ids kept across frames


def test_boxmot_exports_refuse_what_boxmot_cannot_load(lively_run, tmp_path):
    for args, said in [
        (["--format", "onnx", "--input", "crops"], "boxmot resizes and normalises crops itself"),
        (["--format", "torchscript", "--output", str(tmp_path / "m.pt")], "write m.torchscript"),
        (["--format", "weights"], "does not apply to --format weights"),
    ]:
        if "--output" not in args:
            args = [*args, "--output", str(tmp_path / ("m.pth" if "weights" in args else "m.onnx"))]
        result = subprocess.run(
            [sys.executable, str(REPO / "tools" / "export.py"), str(lively_run), "--for", "boxmot", *args],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 2 and said in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
