"""Do trackers get evaluation's features? A tracker reads a frame with OpenCV (BGR), cuts a crop
of whatever size the box has, and feeds it to the exported model. This measures, on a run's own
test crops read with cv2.imread and scaled by each --scale (4: a crop four times the model's
input, a tracker's usual case), the cosine between FeatureExtractor's features (evaluation's
path: PIL's antialiased resize) and those of:

- `images + cv2`: the `--input images` export fed crops resized with cv2.resize(INTER_LINEAR)
  and normalised by hand, as boxmot and most tracker code do;
- `crops`: the `--input crops --bgr` export fed the cv2 crops as they are (it resizes inside);
- `boxmot`: the `--for boxmot` ONNX export through boxmot's own ONNXBackend (each crop as a
  frame with one box: boxmot cuts, resizes with cv2 and normalises), when boxmot is installed;

and the test mAP each path gives on those crops (the run's metric protocol, cosine distance).

    python tools/measure_tracker_features.py RUN_DIR [--scale 1 4] [--model K] [--root ROOT]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--model", type=int)
    parser.add_argument("--scale", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--root", help="the data root (default: the run's)")
    args = parser.parse_args()

    import cv2
    import onnxruntime

    from reidgraft import FeatureExtractor
    from reidgraft.data import load_run_splits
    from reidgraft.engine.trained import TrainedRun
    from reidgraft.evaluation.retrieval import evaluate
    from reidgraft.export import export_model

    run = TrainedRun(args.run_dir)
    config = run.raw_config
    splits = load_run_splits(config["dataset"], args.root or config["root"], run.data, str(run.given), config)
    extractor = FeatureExtractor(run, model=args.model, device="cpu", amp="none")
    folder = Path(tempfile.mkdtemp())
    paths = {"images + cv2": folder / "images.onnx", "crops": folder / "crops.onnx"}
    export_model(run.given, paths["images + cv2"], "onnx", model=extractor.k, dynamic_batch=True)
    export_model(run.given, paths["crops"], "onnx", model=extractor.k, input_kind="crops", bgr=True)
    sessions = {
        name: onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for name, path in paths.items()
    }
    backend = None
    try:
        import torch
        from boxmot.reid.backends.onnx_backend import ONNXBackend

        export_model(run.given, folder / "boxmot.onnx", "onnx", model=extractor.k, tracker="boxmot")
        backend = ONNXBackend(weights=folder / "boxmot.onnx", device=torch.device("cpu"), half=False)
    except ImportError:
        print("(boxmot is not installed: no boxmot row; pip install -e '.[tracking]')")

    def by_boxmot(crop: np.ndarray) -> np.ndarray:  # the whole crop as a frame, one box
        return backend.get_features(np.array([[0, 0, crop.shape[1], crop.shape[0]]], float), crop)

    mean = np.array(extractor.mean, np.float32) * 255
    std = np.array(extractor.std, np.float32) * 255

    def by_cv2(crop: np.ndarray) -> np.ndarray:  # what boxmot's backends do: BGR -> RGB, INTER_LINEAR
        resized = cv2.resize(crop, (extractor.width, extractor.height), interpolation=cv2.INTER_LINEAR)
        return ((resized[:, :, ::-1].astype(np.float32) - mean) / std).transpose(2, 0, 1)

    items = splits.query + splits.gallery
    print(f"{run.given}, model {extractor.k}: {len(splits.query)} query and {len(splits.gallery)} "
          f"gallery crops, model input {extractor.height}x{extractor.width}; ms per crop: one at a time, "
          "preprocessing included, 2 CPU threads")  # fmt: skip
    print("| crop scale | path | cosine with FeatureExtractor: mean | min | test mAP | ms per crop |")
    print("|---|---|---|---|---|---|")
    for scale in args.scale:
        crops = []
        for path, _, _ in items:
            crop = cv2.imread(path, cv2.IMREAD_COLOR)
            if scale != 1:
                crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            crops.append(crop)
        timed = crops[:200]
        features, times = {}, {}
        started = time.perf_counter()
        features["FeatureExtractor"] = np.concatenate([extractor([crop], bgr=True) for crop in timed])
        times["FeatureExtractor"] = time.perf_counter() - started
        started = time.perf_counter()
        features["images + cv2"] = np.concatenate(
            [sessions["images + cv2"].run(["features"], {"images": by_cv2(crop)[None]})[0] for crop in timed]
        )
        times["images + cv2"] = time.perf_counter() - started
        started = time.perf_counter()
        features["crops"] = np.concatenate(
            [sessions["crops"].run(["features"], {"crops": crop[None]})[0] for crop in timed]
        )
        times["crops"] = time.perf_counter() - started
        if backend is not None:
            started = time.perf_counter()
            features["boxmot"] = np.concatenate([by_boxmot(crop) for crop in timed])
            times["boxmot"] = time.perf_counter() - started
        rest = crops[len(timed) :]  # (the rest in batches: only the features matter there)
        if rest:
            features["FeatureExtractor"] = np.concatenate(
                [features["FeatureExtractor"], extractor(rest, bgr=True)]
            )
            images = np.stack([by_cv2(crop) for crop in rest])
            features["images + cv2"] = np.concatenate(
                [features["images + cv2"]]
                + [sessions["images + cv2"].run(["features"], {"images": images[i : i + 64]})[0]
                   for i in range(0, len(images), 64)]
            )  # fmt: skip
            features["crops"] = np.concatenate(
                [features["crops"]]
                + [sessions["crops"].run(["features"], {"crops": crop[None]})[0] for crop in rest]
            )
            if backend is not None:
                features["boxmot"] = np.concatenate([features["boxmot"]] + [by_boxmot(crop) for crop in rest])
        pids = np.array([pid for _, pid, _ in items])
        cams = np.array([cam for _, _, cam in items])
        count = len(splits.query)
        for name, found in features.items():
            cosine = (found * features["FeatureExtractor"]).sum(axis=1)
            result = evaluate(
                found[:count], found[count:], pids[:count], pids[count:], cams[:count], cams[count:],
                metric="cosine", protocol=config.get("metric_protocol", "market1501"),
            )  # fmt: skip
            print(f"| {scale:g}x ({crops[0].shape[0]}x{crops[0].shape[1]} and others) | {name} | "
                  f"{cosine.mean():.6f} | {cosine.min():.6f} | {100 * result.mAP:.2f} | "
                  f"{1000 * times[name] / len(timed):.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
