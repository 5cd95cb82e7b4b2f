"""FeatureExtractor: a run as a function from images to features, equal to evaluation's."""

import numpy as np
import pytest
import torch
from PIL import Image

import reidgraft
from reidgraft.data.registry import load_reid_dataset
from reidgraft.engine import load_checkpoint
from reidgraft.engine.features import extract_features
from reidgraft.engine.trained import TrainedRun


@pytest.fixture(scope="module")
def extractor(tiny_run):
    return reidgraft.FeatureExtractor(tiny_run, model=1, device="cpu")


def test_features_equal_evaluation_features(tiny_run, extractor):
    run = TrainedRun(tiny_run)
    config = run.raw_config
    splits = load_reid_dataset("synthetic", config["root"])
    amp, channels_last = run.precision("auto", torch.device("cpu"))
    models = run.models(torch.device("cpu"), channels_last)
    (evaluated,) = extract_features(
        models[1:], splits.query, height=config["height"], width=config["width"], batch_size=7, workers=0,
        amp=amp, channels_last=channels_last,
    )  # fmt: skip
    paths = [path for path, _, _ in splits.query]
    features = extractor(paths)
    assert features.dtype == np.float32 and features.shape == (len(paths), extractor.dim)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    expected = torch.nn.functional.normalize(evaluated, dim=1).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert (
        extractor.metric == "cosine" and extractor.evaluation_metric == config["metric"] and extractor.k == 1
    )
    # raw features, as evaluation ranks them with the run's metric
    raw = reidgraft.FeatureExtractor(tiny_run, model=1, device="cpu", normalize=False)
    np.testing.assert_allclose(raw(paths), evaluated.numpy(), rtol=1e-5, atol=1e-6)
    assert raw.metric == config["metric"]


def test_every_input_kind_gives_the_same_features(tiny_run, extractor):
    splits = load_reid_dataset("synthetic", load_checkpoint(tiny_run)["config"]["root"])
    path = splits.query[0][0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    reference = extractor(path)
    np.testing.assert_allclose(extractor(Image.open(path)), reference, atol=1e-6)
    np.testing.assert_allclose(extractor(rgb), reference, atol=1e-6)
    np.testing.assert_allclose(extractor(rgb[:, :, ::-1].copy(), bgr=True), reference, atol=1e-6)
    np.testing.assert_allclose(extractor(extractor.preprocess([path])), reference, atol=1e-6)
    # another mode is converted (RGBA, grey); a BGR frame read as RGB is another picture
    rgba = Image.open(path).convert("RGBA")
    np.testing.assert_allclose(extractor(rgba), reference, atol=1e-6)
    assert extractor(Image.open(path).convert("L")).shape == (1, extractor.dim)
    swapped = extractor.preprocess([rgb[:, :, ::-1].copy()])  # a BGR frame read as RGB
    assert (swapped - extractor.preprocess([path])).abs().max() > 0.5
    assert np.abs(extractor(rgb[:, :, ::-1].copy()) - reference).max() > 1e-6
    # batched internally: a list longer than a batch equals one by one
    many = [path, *[item[0] for item in splits.query[1:5]]]
    small = reidgraft.FeatureExtractor(tiny_run, model=1, device="cpu", batch_size=2)
    np.testing.assert_allclose(small(many), np.concatenate([extractor(p) for p in many]), atol=1e-6)


def test_empty_and_bad_inputs(extractor):
    assert extractor([]).shape == (0, extractor.dim) and extractor([]).dtype == np.float32
    with pytest.raises(ValueError, match="image arrays must be uint8"):
        extractor(np.zeros((32, 16, 3), np.float32))
    with pytest.raises(ValueError, match=r"HWC, not CHW"):
        extractor(np.zeros((3, 32, 16, 2), np.uint8)[0])
    with pytest.raises(ValueError, match="a tensor must be preprocessed NCHW float at the run's size"):
        extractor(torch.zeros(2, 3, 64, 32))
    with pytest.raises(ValueError, match="cannot embed a int"):
        extractor([3])


def test_empty_crops_and_non_finite_tensors_are_refused_naming_the_index(extractor):
    frame = np.zeros((100, 100, 3), np.uint8)
    crops = [frame[10:60, 10:40], frame[20:80, 150:180]]  # the second box lies outside the frame
    with pytest.raises(ValueError, match=r"image 1 is empty \(shape \(60, 0, 3\)\).*clip boxes"):
        extractor(crops, bgr=True)
    small = reidgraft.FeatureExtractor(extractor.run_dir, device="cpu", batch_size=2)
    with pytest.raises(ValueError, match="image 3 is empty"):  # counted across batches
        small([frame[:50, :20]] * 3 + [frame[:0]])
    with pytest.raises(ValueError, match=r"image 0 is empty \(0x5 pixels\)"):
        extractor(Image.new("RGB", (0, 5)))
    batch = torch.zeros(3, 3, extractor.height, extractor.width)
    batch[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="image 2 of the tensor holds NaN or infinite values"):
        extractor(batch)
    batch[2, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="image 2 of the tensor"):
        extractor(batch)


def test_default_model_is_the_one_the_run_recommends(tiny_run):
    chosen = reidgraft.FeatureExtractor(tiny_run, device="cpu")
    assert chosen.k == 0 and chosen.chosen_because == "model 0"  # the tiny run held no validation
    with pytest.raises(ValueError, match="model 5: the run .* has models 0..1"):
        reidgraft.FeatureExtractor(tiny_run, model=5, device="cpu")


def test_a_damaged_metrics_file_is_said_not_silently_passed_over(tiny_run, tmp_path):
    import shutil
    import warnings

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "metrics.json").write_text("{not json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extractor = reidgraft.FeatureExtractor(run, device="cpu")
    assert extractor.k == 0
    assert any("metrics.json cannot be read" in str(w.message) for w in caught)


def test_resize_cv2_gives_the_features_of_crops_opencv_resized(lively_run):
    import cv2

    as_opencv = reidgraft.FeatureExtractor(lively_run, device="cpu", amp="none", resize="cv2")
    plain = reidgraft.FeatureExtractor(lively_run, device="cpu", amp="none")
    rng = np.random.default_rng(3)
    crops = [
        cv2.GaussianBlur(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8), (7, 7), 2) for _ in range(2)
    ]
    resized = [
        cv2.resize(crop, (plain.width, plain.height), interpolation=cv2.INTER_LINEAR) for crop in crops
    ]
    np.testing.assert_allclose(as_opencv(crops, bgr=True), plain(resized, bgr=True), atol=1e-6)
    assert (as_opencv(crops) * plain(crops)).sum(axis=1).min() < 0.9999  # not PIL's resize
    assert "resize cv2" in repr(as_opencv)
    with pytest.raises(ValueError, match="resize must be one of pil, cv2, got 'area'"):
        reidgraft.FeatureExtractor(lively_run, device="cpu", resize="area")


def test_a_plain_weights_file_is_embedded_as_its_run(lively_run, tmp_path):
    """`export --format weights` gives a file FeatureExtractor takes alone (its FILE.json says the
    architecture and size); a torchreid model file ({"state_dict": ...}, `module.` prefixes)
    needs the arch and size, as torchreid's extractor does."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    exported = tmp_path / "model1.pth"
    done = subprocess.run(
        [sys.executable, str(repo / "tools" / "export.py"), str(lively_run), "--format", "weights",
         "--model", "1", "--output", str(exported)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    crops = [np.random.default_rng(seed).integers(0, 256, (48, 20, 3), dtype=np.uint8) for seed in range(3)]
    expected = reidgraft.FeatureExtractor(lively_run, model=1, device="cpu", amp="none")(crops)
    from_file = reidgraft.FeatureExtractor(exported, device="cpu", amp="none")
    np.testing.assert_allclose(from_file(crops), expected, atol=1e-5)
    assert "the file's one model" in repr(from_file) and from_file.arch == "mobilenetv2_x1_0"

    state = torch.load(exported, weights_only=True)
    torchreid_style = tmp_path / "torchreid_model.pth.tar"
    # what torchreid's save_checkpoint writes: `module.` keys, a numpy rank1, the optimizer's state
    torch.save(
        {"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 9,
         "rank1": np.float32(0.25), "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}},
        torchreid_style,
    )  # fmt: skip
    loaded = reidgraft.FeatureExtractor(
        torchreid_style, arch="mobilenetv2_x1_0", height=32, width=16, device="cpu"
    )
    np.testing.assert_allclose(loaded(crops), expected, atol=1e-5)
    with pytest.raises(ValueError, match="pass height= and width="):
        reidgraft.FeatureExtractor(torchreid_style, arch="mobilenetv2_x1_0", device="cpu")
    with pytest.raises(
        ValueError, match="not a reidgraft checkpoint .*; for a model's weights alone pass arch="
    ):
        reidgraft.FeatureExtractor(torchreid_style, device="cpu")  # no arch: read as a checkpoint, refused
