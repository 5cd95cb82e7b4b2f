"""tools/export.py: ONNX (run with onnxruntime) and TorchScript (run with torch.jit.load) files
that compute what PyTorch computes, with their contract inside; bad input is one line."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

import reidgraft
from reidgraft.export import CROP_RESIZE, contract_file, export_model, read_contract, sample_images

REPO = Path(__file__).resolve().parents[1]


def export_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "export.py"), *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_dynamic_batch_export_runs_like_pytorch(tiny_run, tmp_path, fmt):
    output = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    result = export_cli(str(tiny_run), "--format", fmt, "--dynamic-batch", "--model", "1",
                        "--output", str(output), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "max abs difference" in result.stdout and ": ok" in result.stdout
    extractor = reidgraft.FeatureExtractor(tiny_run, model=1, device="cpu", amp="none")
    contract = read_contract(output)
    assert contract == json.loads(output.with_name(output.name + ".json").read_text())
    assert contract["input"]["height"] == extractor.height and contract["output"]["dim"] == extractor.dim
    assert contract["input"]["mean"] == list(extractor.mean) and contract["output"]["l2_normalised"]
    assert contract["metric"] == "cosine" and contract["evaluation_metric"] == extractor.evaluation_metric
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([output.name, output.name + ".json"])
    # batches of 3 and 1, neither the traced size: the file runs them, and equals the extractor
    images = sample_images(extractor, 3, seed=5)
    expected = extractor(images)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        got = [session.run(None, {"images": images[:n].numpy()})[0] for n in (3, 1)]
    else:
        loaded = torch.jit.load(str(output))
        with torch.no_grad():
            got = [loaded(images[:n]).numpy() for n in (3, 1)]
    for n, features in zip((3, 1), got, strict=True):
        np.testing.assert_allclose(features, expected[:n], atol=1e-4)


def test_parity_report_and_fixed_batch(tiny_run, tmp_path):
    report = export_model(tiny_run, tmp_path / "fixed.onnx", "onnx", model=0)
    assert report.ok and report.checked_batches == (1,) and report.max_abs_difference < 1e-4
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(report.output.stat().st_mode) == 0o666 & ~mask  # readable by a server
    assert 0.99999 < report.min_cosine <= 1.0 + 1e-6
    assert report.contract["input"]["batch"] == 1


def test_a_broken_export_is_caught_by_the_parity_check(tiny_run, tmp_path, monkeypatch):
    """The check runs the written file: a file that computes something else fails it."""
    import reidgraft.export as export

    writer = export._write_torchscript

    def wrong_model(model, sample, path, contract, dynamic):
        class Doubled(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = model

            def forward(self, images):
                return self.inner(images) * 2

        writer(Doubled(), sample, path, contract, dynamic)

    monkeypatch.setattr(export, "_write_torchscript", wrong_model)
    report = export_model(tiny_run, tmp_path / "wrong.pt", "torchscript")
    assert not report.ok and report.max_abs_difference > 0.1
    assert report.min_cosine > 0.9999  # twice the feature: same direction, caught by the absolute bound
    assert not list(tmp_path.iterdir())  # neither the failing file nor its contract, no temporary


def test_a_small_error_in_every_dimension_is_caught_by_the_cosine_floor(tiny_run, tmp_path, monkeypatch):
    """0.003 in every entry passes fp16's absolute bound (2e-2) but turns each feature by a
    cosine of about 0.994 at dim 1280 (the floor is 0.998): other features, refused."""
    import reidgraft.export as export

    writer = export._write_torchscript

    def tilted_model(model, sample, path, contract, dynamic):
        class Tilted(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = model

            def forward(self, images):
                features = self.inner(images)
                signs = (torch.arange(features.shape[1]) % 2) * 2 - 1
                return features + 0.003 * signs

        writer(Tilted(), sample, path, contract, dynamic)

    monkeypatch.setattr(export, "_write_torchscript", tilted_model)
    report = export_model(tiny_run, tmp_path / "tilted.pt", "torchscript", fp16=True)
    assert report.max_abs_difference < report.tolerance and report.min_cosine < report.cosine_floor == 0.998
    assert not report.ok and not list(tmp_path.iterdir())


def test_an_export_that_computes_nan_is_refused(tiny_run, tmp_path, monkeypatch):
    import reidgraft.export as export

    writer = export._write_torchscript

    def overflowing_model(model, sample, path, contract, dynamic):
        class Overflowing(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = model

            def forward(self, images):
                return self.inner(images) * float("nan")  # as fp16 inf / inf becomes

        writer(Overflowing(), sample, path, contract, dynamic)

    monkeypatch.setattr(export, "_write_torchscript", overflowing_model)
    report = export_model(tiny_run, tmp_path / "nan.pt", "torchscript", fp16=True)
    assert not report.ok and report.max_abs_difference == float("inf")
    assert not list(tmp_path.iterdir())


def test_nothing_is_written_without_onnxruntime_or_over_a_users_file(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the export extra were missing
    with pytest.raises(ValueError, match=r"ONNX export needs onnxruntime.*pip install -e '\.\[export\]'"):
        export_model(tiny_run, tmp_path / "model.onnx", "onnx")
    assert not list(tmp_path.iterdir())
    monkeypatch.undo()
    mine = tmp_path / "model.pt.json"
    mine.write_text("my notes")
    with pytest.raises(ValueError, match="model.pt.json exists; choose another --output"):
        export_model(tiny_run, tmp_path / "model.pt", "torchscript")
    assert mine.read_text() == "my notes" and [path.name for path in tmp_path.iterdir()] == [mine.name]


def test_bad_requests_are_one_line(tiny_run, tmp_path, classification_run):
    existing = tmp_path / "taken.onnx"
    existing.write_bytes(b"mine")
    taken = export_cli(str(tiny_run), "--format", "onnx", "--output", str(existing), cwd=tmp_path)
    assert taken.returncode == 2 and "exists; choose another --output" in taken.stderr
    assert existing.read_bytes() == b"mine"
    classification = export_cli(str(classification_run), "--format", "onnx", "--output",
                                str(tmp_path / "c.onnx"), cwd=tmp_path)  # fmt: skip
    assert classification.returncode == 2 and "is a classification run" in classification.stderr
    assert "Traceback" not in classification.stderr and not (tmp_path / "c.onnx").exists()
    missing = export_cli(str(tmp_path / "nothing"), "--format", "torchscript", "--output",
                         str(tmp_path / "m.pt"), cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory):
    from reidgraft.config import build_config
    from reidgraft.data.registry import load_classification_dataset
    from reidgraft.engine import Trainer

    config = build_config(dataset="digits", arch="resnet20", models=1, epochs=1, batch_size=64, device="cpu")
    run_dir = tmp_path_factory.mktemp("digits-run")
    Trainer(config, load_classification_dataset("digits", "unused"), run_dir, log=lambda line: None).fit()
    return run_dir


@pytest.mark.parametrize(
    "fmt, name, fix",
    [("onnx", "model", "model.onnx"), ("torchscript", "ts.onnx", "ts.pt"), ("onnx", "m.pt", "m.onnx")],
)
def test_an_output_whose_suffix_no_reader_takes_is_refused(tmp_path, fmt, name, fix):
    from reidgraft.export import export_model

    with pytest.raises(ValueError, match=f"write {fix}"):
        export_model(tmp_path / "no-run", tmp_path / name, fmt)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_export_onto_a_full_disk_is_one_line_and_leaves_nothing(tiny_run, small_disk, fmt):
    # torch.jit.save's own writer calls std::terminate on a full disk (exit 134, .tmp kept)
    disk = small_disk(2)
    output = disk / ("model.pt" if fmt == "torchscript" else "model.onnx")
    result = export_cli(str(tiny_run), "--format", fmt, "--output", str(output), cwd=disk.parent)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"export: no space left on the device holding {output}; nothing half-written was "
        "kept: free space there (or choose another folder) and run again"
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert not list(disk.iterdir())


@pytest.mark.parametrize("size", [(160, 60), (640, 240), (80, 30), (59, 22), (368, 138), (17, 301), (2, 2)])
def test_the_crop_graph_resizes_exactly_as_pil(size):
    from PIL import Image

    from reidgraft.export import CropEmbedder

    rng = np.random.default_rng(sum(size))
    coarse = rng.integers(0, 256, (max(2, size[0] // 3), max(2, size[1] // 3), 3), dtype=np.uint8)
    crop = np.array(Image.fromarray(coarse).resize((size[1], size[0]), Image.BICUBIC))
    graph = CropEmbedder(torch.nn.Identity(), (128, 64), mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255))
    with torch.no_grad():
        resized = graph(torch.from_numpy(crop[None]))[0].permute(1, 2, 0).numpy()
    expected = np.asarray(Image.fromarray(crop).resize((64, 128), Image.BILINEAR))  # torchreid's test resize
    assert np.array_equal(resized, expected.astype(np.float32))  # every pixel, not approximately


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_crops_export_gives_feature_extractors_features_for_bgr_crops_of_any_size(
    lively_run, tmp_path, fmt
):
    import cv2

    output = tmp_path / ("crops.onnx" if fmt == "onnx" else "crops.pt")
    result = export_cli(str(lively_run), "--format", fmt, "--input", "crops", "--bgr", "--dynamic-batch",
                        "--model", "1", "--output", str(output), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "smallest cosine with FeatureExtractor on crops of 4 sizes" in result.stdout
    contract = read_contract(output)
    assert contract["input"] | {"mean": None, "std": None} == {
        "name": "crops", "layout": "NHWC", "dtype": "uint8", "channels": "BGR", "height": "any",
        "width": "any", "resized_to": [32, 16], "batch": "dynamic (crops of one size)", "mean": None,
        "std": None, "resize": CROP_RESIZE, "normalisation": "inside the model",
    }  # fmt: skip
    extractor = reidgraft.FeatureExtractor(lively_run, model=1, device="cpu", amp="none")
    rng = np.random.default_rng(7)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (9, 9), 3)  # a BGR frame
    boxes = [(10, 20, 90, 60), (0, 0, 299, 150), (100, 200, 140, 215), (5, 300, 205, 399)]  # y0 x0 y1 x1
    crops = [np.ascontiguousarray(frame[y0:y1, x0:x1]) for y0, x0, y1, x1 in boxes]
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        got = np.concatenate([session.run(["features"], {"crops": crop[None]})[0] for crop in crops])
        pair = session.run(["features"], {"crops": np.stack([crops[0], crops[0][::-1].copy()])})[0]
    else:
        loaded = torch.jit.load(str(output))
        with torch.no_grad():
            got = np.concatenate([loaded(torch.from_numpy(crop[None])).numpy() for crop in crops])
            pair = loaded(torch.from_numpy(np.stack([crops[0], crops[0][::-1].copy()]))).numpy()
    expected = extractor(crops, bgr=True)
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() > 0.99999, cosines
    assert np.abs(got - expected).max() < 1e-4
    np.testing.assert_allclose(pair, extractor([crops[0], crops[0][::-1].copy()], bgr=True), atol=1e-4)
    assert (expected[0] * expected[1]).sum() < 0.999  # the features differ from crop to crop


def test_a_crop_graph_that_resizes_as_opencv_fails_the_evaluation_check(lively_run, tmp_path, monkeypatch):
    from reidgraft import export as exporting

    def opencv_like(pixels, width):  # bilinear without antialiasing, as cv2.INTER_LINEAR
        rows = pixels.flatten(1, 2).unsqueeze(2).float()
        rows = torch.nn.functional.interpolate(rows, size=(1, width), mode="bilinear", align_corners=False)
        return rows.round().clamp(0, 255).squeeze(2).unflatten(1, (3, -1)).double()

    def opencv_like_down(pixels, height):
        return opencv_like(pixels.transpose(2, 3), height).transpose(2, 3)

    monkeypatch.setattr(exporting.CropEmbedder, "_across", staticmethod(opencv_like))
    monkeypatch.setattr(exporting.CropEmbedder, "_down", staticmethod(opencv_like_down))
    report = export_model(lively_run, tmp_path / "cv2.onnx", "onnx", input_kind="crops")
    assert report.max_abs_difference < 1e-4  # the file computes what its module computes ...
    assert not report.ok and report.evaluation_cosine < 0.999  # ... but not evaluation's features
    assert not list(tmp_path.iterdir())


def test_openvino_export_runs_like_pytorch_in_openvinos_runtime(tiny_run, tmp_path):
    import openvino

    output = tmp_path / "model.xml"
    result = export_cli(str(tiny_run), "--format", "openvino", "--dynamic-batch", "--model", "1",
                        "--output", str(output), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.bin", "model.xml", "model.xml.json"]
    contract = read_contract(output)
    assert contract == json.loads((tmp_path / "model.xml.json").read_text())
    assert contract["format"] == "openvino" and contract["runtime"] == {"INFERENCE_PRECISION_HINT": "f32"}
    extractor = reidgraft.FeatureExtractor(tiny_run, model=1, device="cpu", amp="none")
    images = sample_images(extractor, 5, seed=3)
    compiled = openvino.Core().compile_model(str(output), "CPU", contract["runtime"])
    got = compiled([images.numpy()])[compiled.outputs[0]]
    np.testing.assert_allclose(got, extractor(images), atol=1e-4)


def test_weights_export_loads_into_torchreids_own_model(lively_run, tmp_path):
    import torchreid

    output = tmp_path / "model.pth"
    result = export_cli(str(lively_run), "--format", "weights", "--model", "1", "--output", str(output),
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "torchreid's layout" in result.stdout
    contract = read_contract(output)
    assert (
        contract["format"] == "weights"
        and contract["torchreid_layout"]
        and not contract["output"]["l2_normalised"]
    )
    state = torch.load(output, weights_only=True)  # a plain state dict of one model
    checkpoint_size = (lively_run / "checkpoint.pt").stat().st_size
    assert output.stat().st_size < checkpoint_size / 1.5  # one model, no optimizer, not every model's storage
    model = torchreid.models.build_model(
        contract["arch"], num_classes=contract["num_classes"], pretrained=False
    )
    model.load_state_dict(state)  # strict: every key, every shape
    extractor = reidgraft.FeatureExtractor(lively_run, model=1, device="cpu", amp="none", normalize=False)
    images = sample_images(extractor, 3, seed=4)
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(images).numpy(), extractor(images), atol=1e-5)


def test_weights_export_refuses_what_a_state_dict_cannot_be(tiny_run, tmp_path):
    for flag in (["--fp16"], ["--dynamic-batch"], ["--input", "crops"]):
        result = export_cli(str(tiny_run), "--format", "weights", *flag, "--output", str(tmp_path / "m.pth"),
                            cwd=tmp_path)  # fmt: skip
        assert result.returncode == 2 and "does not apply to --format weights" in result.stderr, result.stderr
    result = export_cli(
        str(tiny_run), "--format", "weights", "--output", str(tmp_path / "m.onnx"), cwd=tmp_path
    )
    assert result.returncode == 2 and "write m.pth" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_torchscript_export_prints_no_deprecation_warnings(tiny_run, tmp_path):
    result = export_cli(
        str(tiny_run), "--format", "torchscript", "--output", str(tmp_path / "m.pt"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_an_openvino_export_that_fails_while_publishing_leaves_nothing(tiny_run, tmp_path, monkeypatch):
    """FILE.bin is given its name before FILE.xml: when a later step fails (the .xml's name taken
    meanwhile, the contract unwritable), what was published already is removed again."""
    from reidgraft import export as exporting

    publish = exporting._publish
    calls = []

    def second_fails(temporary, output):
        calls.append(output)
        if len(calls) == 2:
            raise ValueError(f"{output} exists; choose another --output (nothing was overwritten)")
        publish(temporary, output)

    monkeypatch.setattr(exporting, "_publish", second_fails)
    with pytest.raises(ValueError, match="model.xml exists"):
        export_model(tiny_run, tmp_path / "model.xml", "openvino")
    assert [path.name for path in calls] == ["model.bin", "model.xml"]
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(exporting, "_publish", publish)

    def no_contract(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exporting, "atomic_write_json", no_contract)
    with pytest.raises(OSError):
        export_model(tiny_run, tmp_path / "model.xml", "openvino")
    assert list(tmp_path.iterdir()) == []


def test_an_int8_export_passes_its_gate_on_the_runs_validation_identities(val_run, tmp_path, monkeypatch):
    import onnx

    import reidgraft.export as export

    # 4 validation people give a coarse mAP (one rank moves it by points): the gate's bound on it
    # is tested below, here the file and its record
    monkeypatch.setattr(export, "INT8_MAX_MAP_DROP", 100.0)
    report = export_model(val_run, tmp_path / "reid-int8.onnx", "onnx", int8=True, dynamic_batch=True)
    assert report.ok and report.output.exists(), report
    gate = report.int8
    assert gate.images == 4 * 6 and gate.calibration_images == 6 * 6  # 4 held-out people; 6 trained
    assert 0.98 <= gate.mean_cosine < 1 and 0 < gate.map_int8 <= 100
    contract = json.loads(contract_file(report.output).read_text())
    assert contract["precision"] == "int8" and contract["int8"]["map_int8"] == gate.map_int8
    session = onnxruntime.InferenceSession(str(report.output), providers=["CPUExecutionProvider"])
    kinds = {node.op_type for node in onnx.load(str(report.output)).graph.node}
    assert "QuantizeLinear" in kinds and "DequantizeLinear" in kinds  # really quantized
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 16)).astype(np.float32)
    (features,) = session.run(["features"], {"images": batch})
    assert features.shape == (3, contract["output"]["dim"])


@pytest.mark.parametrize(("bound", "value"), [("INT8_MIN_MEAN_COSINE", 1.5), ("INT8_MAX_MAP_DROP", -100.0)])
def test_an_int8_file_that_fails_its_gate_is_not_written(val_run, tmp_path, monkeypatch, bound, value):
    import reidgraft.export as export

    monkeypatch.setattr(export, bound, value)  # a bound no file can meet
    report = export_model(val_run, tmp_path / "reid-int8.onnx", "onnx", int8=True)
    assert not report.ok and report.int8 is not None and not report.int8.ok
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing, no temporary either


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--format", "torchscript", "--output", "m.pt", "--int8"), "--int8 quantizes ONNX image models"),
        (("--format", "onnx", "--output", "m.onnx", "--int8", "--fp16"), "--fp16 does not go with it"),
        (("--format", "onnx", "--output", "m.onnx", "--int8", "--input", "crops"), "--input crops does not"),
        (("--format", "onnx", "--output", "m.onnx", "--int8"), "held none out; retrain with --val-ids N"),
    ],
)
def test_int8_requests_that_cannot_be_met_are_one_line(tiny_run, tmp_path, args, message):
    result = export_cli(str(tiny_run), *args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert message in line and not list(tmp_path.iterdir())
