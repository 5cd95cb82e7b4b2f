"""A trained re-ID model as an ONNX, TorchScript or OpenVINO file (or one model's plain weights),
with its contract written beside it and its parity with PyTorch checked by running the exported
file.

The contract, one of two inputs (`input`):
- `images` (the default): float32 NCHW images at the run's input size, normalised with
  ImageNet's mean and std (torchreid's test transform), which the caller must reproduce;
- `crops`: uint8 NHWC crops of ANY size, as a tracker cuts them from a frame (RGB, or BGR with
  `bgr=True` for OpenCV frames). The graph itself resizes them as evaluation does (PIL's
  antialiased bilinear, rounded to 8 bits) and normalises them, so a tracker gets evaluation's
  features whatever resize it would have used (OpenCV's INTER_LINEAR does not antialias, and
  moves features far from evaluation's on crops larger than the model's input).
Out: L2-normalised float32 features, to be compared by cosine similarity. The contract is stored
in the file's own metadata (ONNX metadata_props, a TorchScript extra file, OpenVINO's rt_info)
and in FILE.json. The file is written under a temporary name and run there; it gets its name
only when it matches PyTorch, and an existing file is never replaced.

`weights` is model k's state dict alone (torch.save of a plain dict, the layout torchreid's
`build_model` gives when the run used no BNNeck and the default last stride), checked by
building the model afresh from the contract and loading it. `tracker="boxmot"` also writes the
sidecar boxmot's re-ID backends read (FILE.metadata.json: architecture and input size), so
boxmot loads an ONNX, OpenVINO or TorchScript export as it is; boxmot resizes crops with
OpenCV and normalises them itself, so such exports take `images`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .extractor import FeatureExtractor
from .files import DiskFull, atomic_write_json, new_temporary, no_space_inside
from .models.registry import IMAGENET_MEAN, IMAGENET_STD
from .models.reid_head import build_reid_model, head_options

FORMATS = ("onnx", "torchscript", "openvino", "weights")
FP32_TOLERANCE = 1e-4  # the largest absolute difference from PyTorch an fp32 export may show
FP16_TOLERANCE = 2e-2  # fp16 weights and activations: about 3 significant digits
# An absolute bound alone is loose on unit vectors of many dimensions (at dim 2048 an entry is
# about 0.02), so each feature must also keep its direction: cosine with PyTorch's at least this
# (fp32 exports measured 1.000000; fp16 ones 0.9997 to 0.9999 on MobileNetV2 at 128x64).
FP32_MIN_COSINE = 0.9999
FP16_MIN_COSINE = 0.998
METADATA_NAME = "reidgraft.json"  # the TorchScript extra file holding the contract
ONNX_OPSET = 18


INPUTS = ("images", "crops")
# int8 (ONNX, onnxruntime's static quantization): the gate measured at export, on the run's
# validation identities, against the fp32 export
INT8_MIN_MEAN_COSINE = 0.98  # the features' mean cosine with fp32's
INT8_MAX_MAP_DROP = 0.5  # validation mAP, in points, that int8 may lose against fp32
INT8_CALIBRATION_IMAGES = 512  # training crops the activation ranges are calibrated on
TRACKERS = ("boxmot",)
BOXMOT_FORMATS = ("onnx", "openvino", "torchscript")
# OpenVINO's CPU plugin computes in bf16 on CPUs that have it unless told otherwise; the
# contract asks for fp32 and the parity check runs that way
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
# crops: the export is also checked against FeatureExtractor (PIL's resize, evaluation's path) on
# crops of several sizes; each feature must keep at least this cosine with FeatureExtractor's
CROP_MIN_COSINE = 0.999
CROP_RESIZE = "inside the model: PIL's antialiased bilinear, pixel for pixel (torchreid's test transform)"
CROP_SIZES = ((1, 1), (4, 4), (0.5, 0.5), (1.7, 0.6))  # sample crop sizes, as multiples of (height, width)


PIL_PRECISION_BITS = 22  # PIL's fixed-point resampling coefficients: 32 - 8 - 2 bits


def _pil_coefficients(positions: torch.Tensor, out_size: int, out_first: bool) -> torch.Tensor:
    """PIL's bilinear resampling weights from an axis of len(positions) pixels to `out_size`, as
    its Resample.c computes them (antialiased: the triangle widens by the reduction factor;
    normalised per output pixel; in fixed point), as a float64 matrix: out_size x len(positions)
    when `out_first`, else its transpose, built so (a transpose before a matmul is fused by
    onnxruntime into FusedMatMul, which older releases run in float32 only). `positions`
    (0, 1, ..., n - 1) is made from the input itself, so no size is baked in a graph."""
    count = positions[-1:] + 1
    scale = count / out_size
    support = scale.clamp(min=1.0)  # bilinear's support 1, widened when reducing
    outputs = torch.arange(out_size, dtype=torch.float64)
    center = ((outputs.unsqueeze(1) if out_first else outputs.unsqueeze(0)) + 0.5) * scale
    first = (center - support + 0.5).floor().clamp(min=0)
    end = torch.minimum((center + support + 0.5).floor(), count)
    pixel = positions.unsqueeze(0) if out_first else positions.unsqueeze(1)
    weights = (1 - ((pixel - center + 0.5) / support).abs()).clamp(min=0) * ((pixel >= first) & (pixel < end))
    weights = weights / weights.sum(1 if out_first else 0, keepdim=True)
    return (weights * (1 << PIL_PRECISION_BITS) + 0.5).floor()


def _round_pass(sums: torch.Tensor) -> torch.Tensor:
    """A pass's fixed-point sums back to 8-bit pixels, rounded as PIL rounds them."""
    half = float(1 << (PIL_PRECISION_BITS - 1))
    return ((sums + half) / (1 << PIL_PRECISION_BITS)).floor().clamp(0, 255)


class CropEmbedder(nn.Module):
    """Evaluation's preprocessing inside the graph, in front of a NormalisedEmbedder: N x H x W x 3
    uint8 crops of any size (RGB, or BGR) resized to the run's size exactly as PIL resizes them
    (torchreid's test transform: bilinear, antialiased, across then down, each pass rounded to 8
    bits; every pixel equal, checked on CUHK01 crops at 0.37x to 4x), scaled and normalised. The
    arithmetic is float64, where PIL's integer sums are exact."""

    def __init__(self, embedder: nn.Module, size: tuple[int, int], mean, std, bgr: bool = False):
        super().__init__()
        self.embedder, self.size, self.bgr = embedder, size, bgr
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.eval()

    @staticmethod
    def _across(pixels: torch.Tensor, width: int) -> torch.Tensor:
        """N x 3 x H x W (float64) resized to width `width` as one PIL pass."""
        positions = torch.ones_like(pixels[0, 0, 0, :]).cumsum(0) - 1
        return _round_pass(pixels @ _pil_coefficients(positions, width, out_first=False))

    @staticmethod
    def _down(pixels: torch.Tensor, height: int) -> torch.Tensor:
        """N x 3 x H x W (float64) resized to height `height` as one PIL pass."""
        positions = torch.ones_like(pixels[0, 0, :, 0]).cumsum(0) - 1
        return _round_pass(_pil_coefficients(positions, height, out_first=True) @ pixels)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        pixels = crops.permute(0, 3, 1, 2).double()
        if self.bgr:
            pixels = pixels.flip(1)
        height, width = self.size
        pixels = self._down(self._across(pixels, width), height).float()  # PIL's order: across, then down
        return self.embedder((pixels - self.mean) / self.std)


def sample_crops(extractor: FeatureExtractor, seed: int = 0) -> list[np.ndarray]:
    """Smooth random crops (HWC uint8, RGB) at the sizes of CROP_SIZES: native, 4x, half and a
    tall thin one. Smooth, as photographs are: resizing noise is a harder test than any crop."""
    rng = np.random.default_rng(seed)
    crops = []
    for height_scale, width_scale in CROP_SIZES:
        height = max(2, round(extractor.height * height_scale))
        width = max(2, round(extractor.width * width_scale))
        coarse = rng.integers(0, 256, (max(2, height // 4), max(2, width // 4), 3), dtype=np.uint8)
        crops.append(np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC)))
    return crops


class NormalisedEmbedder(nn.Module):
    """The model in eval mode, its features L2-normalised, optionally computing in fp16 behind
    float32 inputs and outputs (so the contract does not change with the precision)."""

    def __init__(self, model: nn.Module, fp16: bool = False):
        super().__init__()
        self.model, self.fp16 = model, fp16
        if fp16:
            self.model.half()
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model(images.half() if self.fp16 else images).float()
        return nn.functional.normalize(features, dim=1)


@dataclass(frozen=True)
class ExportReport:
    output: Path  # written only when `ok`
    contract: dict[str, Any]
    max_abs_difference: float
    tolerance: float
    checked_batches: tuple[int, ...]
    min_cosine: float = 1.0  # the smallest cosine between a feature and PyTorch's
    cosine_floor: float = FP32_MIN_COSINE
    # crops: the smallest cosine with FeatureExtractor's features of the same crops (None: images)
    evaluation_cosine: float | None = None
    evaluation_floor: float = CROP_MIN_COSINE
    int8: Int8Gate | None = None  # --int8: the quantized file's gate (the checks above: its fp32 source)

    @property
    def ok(self) -> bool:
        faithful = self.evaluation_cosine is None or self.evaluation_cosine >= self.evaluation_floor
        parity = self.max_abs_difference <= self.tolerance and self.min_cosine >= self.cosine_floor
        return parity and faithful and (self.int8 is None or self.int8.ok)


@dataclass(frozen=True)
class Int8Gate:
    """What an int8 file kept of its fp32 source, on the run's validation identities."""

    mean_cosine: float  # of each image's int8 feature with its fp32 feature
    map_fp32: float  # validation mAP, percent
    map_int8: float
    images: int  # validation images scored
    calibration_images: int  # training crops the activation ranges came from

    @property
    def ok(self) -> bool:
        return self.mean_cosine >= INT8_MIN_MEAN_COSINE and self.map_fp32 - self.map_int8 <= INT8_MAX_MAP_DROP

    def failed(self) -> str:
        """Which bound the int8 file missed, and by how much ("" when it passed)."""
        missed = []
        if self.mean_cosine < INT8_MIN_MEAN_COSINE:
            missed.append(f"mean cosine {self.mean_cosine:.4f} < {INT8_MIN_MEAN_COSINE}")
        if self.map_fp32 - self.map_int8 > INT8_MAX_MAP_DROP:
            missed.append(f"mAP drop {self.map_fp32 - self.map_int8:.2f} > {INT8_MAX_MAP_DROP} points")
        return "; ".join(missed)

    def line(self) -> str:
        return (
            f"int8 against fp32 on {self.images} validation images: mean cosine {self.mean_cosine:.4f} "
            f"(at least {INT8_MIN_MEAN_COSINE}), mAP {self.map_int8:.2f}% against {self.map_fp32:.2f}% "
            f"(a drop of {self.map_fp32 - self.map_int8:+.2f} points; at most {INT8_MAX_MAP_DROP}); "
            f"calibrated on {self.calibration_images} training crops"
        )


def contract_of(
    extractor: FeatureExtractor, fmt: str, dynamic_batch: bool, fp16: bool, input_kind: str = "images",
    bgr: bool = False,
) -> dict[str, Any]:  # fmt: skip
    if input_kind == "crops":
        batch = "dynamic (crops of one size)" if dynamic_batch else 1
        shape = {"layout": "NHWC", "dtype": "uint8", "channels": "BGR" if bgr else "RGB", "height": "any",
                 "width": "any", "resized_to": [extractor.height, extractor.width], "batch": batch,
                 "resize": CROP_RESIZE,
                 "normalisation": "inside the model"}  # fmt: skip
    else:
        shape = {"layout": "NCHW", "dtype": "float32", "channels": "RGB", "height": extractor.height,
                 "width": extractor.width, "batch": "dynamic" if dynamic_batch else 1,
                 "resize": "bilinear to height x width, as torchreid's test transform (PIL, antialiased)",
                 "normalisation": "(pixel / 255 - mean) / std"}  # fmt: skip
    contract = {
        "format": fmt,
        "run": str(extractor.run_dir),
        "model": extractor.k,
        "arch": extractor.arch,
        "input": {
            "name": input_kind,
            **shape,
            "mean": list(extractor.mean),
            "std": list(extractor.std),
        },  # fmt: skip
        "output": {"name": "features", "dtype": "float32", "dim": extractor.dim, "l2_normalised": True},
        "metric": "cosine",
        "evaluation_metric": extractor.evaluation_metric,
        "precision": "fp16" if fp16 else "fp32",
    }
    if fmt == "weights":  # what a model must be built as to take these weights
        contract["input"]["batch"] = "any"
        contract["output"]["l2_normalised"] = False  # the model's own output: normalise it
        contract["head"] = head_options(extractor.config)
        contract["num_classes"] = extractor.run.num_classes
        contract["torchreid_layout"] = contract["head"] == {"bnneck": False, "last_stride": 2}
    if fmt == "openvino":
        contract["runtime"] = dict(OPENVINO_CONFIG)
    return contract


def sample_images(extractor: FeatureExtractor, count: int, seed: int = 0) -> torch.Tensor:
    """`count` preprocessed images: random pictures put through the run's own preprocessing."""
    rng = np.random.default_rng(seed)
    pictures = [
        rng.integers(0, 256, (extractor.height, extractor.width, 3), dtype=np.uint8) for _ in range(count)
    ]
    return extractor.preprocess(pictures)


def contract_file(output: Path) -> Path:
    """FILE.json, the contract beside the exported FILE."""
    return output.with_name(output.name + ".json")


def boxmot_sidecar(output: Path) -> Path:
    """FILE.metadata.json, where boxmot's re-ID backends look for an export's architecture and size."""
    return output.with_name(output.name + ".metadata.json")


def openvino_weights(output: Path) -> Path:
    """FILE.bin, the weights OpenVINO reads beside FILE.xml."""
    return output.with_suffix(".bin")


def check_export_tools(fmt: str) -> None:
    """ValueError (one line) when the `export` extra that ONNX and OpenVINO need is not installed."""
    if fmt not in ("onnx", "openvino"):
        return
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401

        if fmt == "openvino":
            import openvino  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"{'ONNX' if fmt == 'onnx' else 'OpenVINO'} export needs {error.name or 'onnx'}, which is not "
            "installed; pip install -e '.[export]' (scripts/setup.sh installs it)"
        ) from None


# the file names each format's readers expect (read_contract and others go by the suffix)
SUFFIXES = {
    "onnx": (".onnx",),
    "torchscript": (".pt", ".pth", ".ts", ".torchscript"),
    "openvino": (".xml",),
    "weights": (".pth", ".pt"),
}
BOXMOT_SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript"}  # what boxmot reads


def _check_request(
    fmt: str, output: Path, input_kind: str, bgr: bool, fp16: bool, dynamic_batch: bool, tracker: str | None,
    int8: bool = False,
) -> None:  # fmt: skip
    """ValueError (one line) for a request that cannot be met, before anything is loaded."""
    if int8 and (fmt != "onnx" or input_kind != "images" or fp16):
        given = "--fp16" if fp16 else f"--format {fmt}" if fmt != "onnx" else "--input crops"
        raise ValueError(
            f"--int8 quantizes ONNX image models (onnxruntime's static quantization): {given} does not "
            "go with it; use --format onnx --input images"
        )
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if input_kind not in INPUTS:
        raise ValueError(f"unknown input {input_kind!r}; choose one of: {', '.join(INPUTS)}")
    if tracker is not None and tracker not in TRACKERS:
        raise ValueError(f"unknown tracker {tracker!r}; choose one of: {', '.join(TRACKERS)}")
    if bgr and input_kind != "crops":
        raise ValueError("--bgr is for --input crops (images are normalised RGB tensors); add --input crops")
    if fmt == "weights" and (input_kind != "images" or fp16 or dynamic_batch or tracker):
        given = next(
            flag for flag, on in (("--input crops", input_kind != "images"), ("--fp16", fp16),
                                  ("--dynamic-batch", dynamic_batch), ("--for", tracker)) if on
        )  # fmt: skip
        raise ValueError(
            f"{given} does not apply to --format weights (the model's own fp32 weights, any batch); drop it"
        )
    if tracker == "boxmot":
        if fmt not in BOXMOT_FORMATS:
            raise ValueError(f"--for boxmot takes --format {', '.join(BOXMOT_FORMATS)}, not {fmt}")
        if input_kind != "images":
            raise ValueError(
                "--for boxmot exports take images: boxmot resizes and normalises crops itself and feeds "
                "float NCHW images; drop --input crops"
            )
        if not output.name.endswith(BOXMOT_SUFFIXES[fmt]):
            raise ValueError(
                f"--output {output}: boxmot picks its {fmt} backend by the suffix "
                f"{BOXMOT_SUFFIXES[fmt]}; write {output.stem}{BOXMOT_SUFFIXES[fmt]}"
            )
    wanted = SUFFIXES[fmt]
    if output.suffix not in wanted:
        article = "an" if fmt in ("onnx", "openvino") else "a"
        what = f"{article} {fmt} file" if fmt != "weights" else "a weights file"
        raise ValueError(
            f"--output {output}: {what} is named *{' or *'.join(wanted)} (reidgraft and other tools "
            f"read it by its suffix); write {output.with_suffix(wanted[0]).name}"
        )
    written = [output, contract_file(output)]
    written += [openvino_weights(output)] if fmt == "openvino" else []
    written += [boxmot_sidecar(output)] if tracker == "boxmot" else []
    for path in written:
        if path.exists():
            raise ValueError(f"{path} exists; choose another --output (nothing was overwritten)")


def export_model(
    run_dir: str | Path,
    output: str | Path,
    fmt: str,
    *,
    model: int | None = None,
    dynamic_batch: bool = False,
    fp16: bool = False,
    input_kind: str = "images",
    bgr: bool = False,
    tracker: str | None = None,
    int8: bool = False,
) -> ExportReport:
    """Write model k of the run to `output` in `fmt` and its contract to FILE.json, once the
    written file, run on sample inputs, matches PyTorch within the tolerance (and, for `crops`,
    FeatureExtractor's features of the same crops within CROP_MIN_COSINE). When it does not,
    nothing is written and the report says by how much. `tracker="boxmot"`: a dynamic batch, and
    boxmot's sidecar written too. `int8`: the checked fp32 ONNX file quantized (onnxruntime,
    static, activation ranges from the run's training crops) and written only when it passes
    `Int8Gate` on the run's validation identities."""
    output = Path(output)
    _check_request(fmt, output, input_kind, bgr, fp16, dynamic_batch, tracker, int8)
    dynamic_batch = dynamic_batch or tracker == "boxmot"  # boxmot feeds every crop of a frame at once
    check_export_tools(fmt)
    extractor = FeatureExtractor(run_dir, model=model, device="cpu", amp="none")
    extractor.model.float().to(memory_format=torch.contiguous_format)
    if tracker == "boxmot" and (tuple(extractor.mean), tuple(extractor.std)) != (IMAGENET_MEAN, IMAGENET_STD):
        raise ValueError(
            f"{extractor.arch} normalises with mean {extractor.mean} and std {extractor.std}; boxmot "
            "normalises with ImageNet's, so its features would be wrong; use --input crops outside boxmot"
        )
    int8_data = _int8_data(extractor) if int8 else None  # (the data first: refused before any work)
    contract = contract_of(extractor, fmt, dynamic_batch, fp16, input_kind, bgr)
    checks = _crop_checks(extractor, dynamic_batch, bgr) if input_kind == "crops" else _image_checks(
        extractor, dynamic_batch or fmt == "weights"
    )  # fmt: skip
    exported = NormalisedEmbedder(extractor.model, fp16=fp16)
    if input_kind == "crops":
        exported = _crop_embedder(exported, extractor, bgr)
    write, runner = _writer_and_runner(fmt)
    output.parent.mkdir(parents=True, exist_ok=True)
    claimed = new_temporary(output)
    # (OpenVINO saves only to *.xml, its weights beside it as *.bin)
    temporary = claimed.with_suffix(".xml") if fmt == "openvino" else claimed
    try:
        try:
            write(exported, checks.trace_input, temporary, contract, dynamic_batch)
        except BaseException as error:
            if no_space_inside(error):  # (ONNX's writer raises the OSError itself)
                raise DiskFull(output) from None
            raise
        run = _in_runtime(fmt, runner, temporary, contract)
        difference, cosine, fidelity = 0.0, 1.0, 1.0
        for inputs, expected, evaluation in checks.cases:
            got = _in_runtime(fmt, run, inputs)
            if not np.isfinite(got).all():  # (max and min would pass over a NaN)
                difference, cosine, fidelity = math.inf, -1.0, -1.0
                break
            difference = max(difference, float(np.abs(got - expected).max()))
            cosine = min(cosine, _smallest_cosine(got, expected))
            if evaluation is not None:
                fidelity = min(fidelity, _smallest_cosine(got, evaluation))
        tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
        floor = FP16_MIN_COSINE if fp16 else FP32_MIN_COSINE
        gate, publishing = None, temporary
        if int8_data is not None and difference <= tolerance and cosine >= floor:
            publishing = temporary.with_name(temporary.name + ".int8")
            gate = _quantize_int8(temporary, publishing, int8_data, dynamic_batch, contract)
            contract["precision"] = "int8"
            contract["int8"] = {**gate.__dict__, "method": INT8_METHOD}
        report = ExportReport(
            output, contract, difference, tolerance, checks.batches, cosine, floor,
            fidelity if input_kind == "crops" else None, int8=gate,
        )  # fmt: skip
        published: list[Path] = []  # (removed again if a later step fails: all or nothing)
        try:
            if report.ok:
                if fmt == "openvino":  # the weights first: an .xml never names a missing .bin
                    _publish(openvino_weights(temporary), openvino_weights(output))
                    published.append(openvino_weights(output))
                _publish(publishing, output)
                published.append(output)
                atomic_write_json(contract_file(output), contract)
                published.append(contract_file(output))
                if tracker == "boxmot":
                    atomic_write_json(boxmot_sidecar(output), boxmot_metadata(contract))
            published.clear()
        finally:
            for path in published:
                path.unlink(missing_ok=True)
    finally:  # an error or Ctrl-C leaves nothing behind
        claimed.unlink(missing_ok=True)
        temporary.unlink(missing_ok=True)
        # ONNX weights past torch's large-model threshold are first saved beside the file
        temporary.with_name(temporary.name + ".data").unlink(missing_ok=True)
        openvino_weights(temporary).unlink(missing_ok=True)
        temporary.with_name(temporary.name + ".int8").unlink(missing_ok=True)
    return report


INT8_METHOD = (
    "onnxruntime quantize_static: QDQ, weights int8 per channel, activations uint8, ranges from the "
    "99.999th percentile of the run's training crops' activations"
)


def _int8_data(extractor: FeatureExtractor) -> dict[str, Any]:
    """The run's training crops to calibrate on and its validation images to gate with.
    ValueError (one line) when the run held out no validation identities."""
    run = extractor.run
    split = run.held_out()
    if split is None:
        raise ValueError(
            f"--int8 checks the int8 file on the run's validation identities, and {run.given} held none "
            "out; retrain with --val-ids N, or export without --int8"
        )
    train, validation = split
    paths = sorted(path for path, _, _ in train.train)
    chosen = np.random.default_rng(0).choice(
        len(paths), min(INT8_CALIBRATION_IMAGES, len(paths)), replace=False
    )
    return {
        "calibration": extractor.preprocess([paths[i] for i in sorted(chosen)]).numpy(),
        "query": validation.query,
        "gallery": validation.gallery,
        "images": extractor.preprocess(
            [path for path, _, _ in validation.query + validation.gallery]
        ).numpy(),
    }


def quantize_onnx(source: Path, target: Path, calibration: np.ndarray, input_name: str = "images") -> None:
    """Quantize the fp32 ONNX image model `source` into `target` (INT8_METHOD), its activation
    ranges from `calibration` (preprocessed NCHW images). No check: `export_model(int8=True)`
    gates what it writes."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Crops(CalibrationDataReader):
        def __init__(self, images: np.ndarray):
            self.batches = iter(images[i : i + 1] for i in range(len(images)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    prepared = target.with_name(target.name + ".pre")
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)  # (it fails on our graph)
            quantize_static(
                str(prepared), str(target), Crops(calibration), quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
            )  # fmt: skip
    finally:
        prepared.unlink(missing_ok=True)


def _quantize_int8(source: Path, target: Path, data: dict, dynamic_batch: bool, contract: dict) -> Int8Gate:
    """Quantize the fp32 ONNX file `source` into `target` and measure it against `source`."""
    from .evaluation.retrieval import evaluate

    quantize_onnx(source, target, data["calibration"], contract["input"]["name"])
    features = {}
    for name, path in (("fp32", source), ("int8", target)):
        run = _onnx_runner(path, contract)
        step = len(data["images"]) if dynamic_batch else 1
        features[name] = np.concatenate(
            [run(data["images"][i : i + step]) for i in range(0, len(data["images"]), step)]
        )
    unit = {
        name: found / np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
        for name, found in features.items()
    }
    cosine = float(np.mean(np.sum(unit["fp32"] * unit["int8"], axis=1)))
    queries = len(data["query"])
    pids = [[pid for _, pid, _ in data[side]] for side in ("query", "gallery")]
    camids = [[camid for _, _, camid in data[side]] for side in ("query", "gallery")]
    scores = {}
    for name, found in features.items():
        result = evaluate(found[:queries], found[queries:], *pids, *camids, metric="cosine")
        scores[name] = 100 * result.mAP
    return Int8Gate(cosine, scores["fp32"], scores["int8"], len(features["fp32"]), len(data["calibration"]))


def boxmot_metadata(contract: dict[str, Any]) -> dict[str, Any]:
    """The sidecar boxmot 25's re-ID backends read beside an export (its schema version 1): the
    architecture's name and the input size (else boxmot assumes 256 x 128), and its `resize`
    preprocessing (cv2.resize to that size, no padding)."""
    size = [contract["input"]["height"], contract["input"]["width"]]
    return {
        "schema_version": 1,
        "model_name": contract["arch"],
        "img_size": size,
        "model_kwargs_schema_version": 1,
        "model_kwargs": {"img_size": size},
        "preprocess": "resize",
        "producer": "reidgraft",
    }


class RuntimeFault(RuntimeError):
    """The runtime that checks an export (onnxruntime, OpenVINO, torch.jit) could not load or run
    the written file: a fault of that runtime or of the graph, not of the user's input."""

    exit_status = 1  # (cli/entry.py)


def _in_runtime(fmt: str, call, *args):
    try:
        return call(*args)
    except Exception as error:  # (onnxruntime's errors are no RuntimeError)
        line = (str(error).strip().splitlines() or [type(error).__name__])[-1][:300]
        raise RuntimeFault(
            f"the written {fmt} file could not be loaded and run for its check ({type(error).__name__}: "
            f"{line}); nothing was written: check the runtime's version against constraints.txt"
        ) from None


def _smallest_cosine(got: np.ndarray, expected: np.ndarray) -> float:
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    return float(((got * expected).sum(axis=1) / np.maximum(norms, 1e-12)).min())


@dataclass(frozen=True)
class _Checks:
    """What an export is traced on and checked against: per case (input, PyTorch's output of the
    exported module in fp32, and FeatureExtractor's features of the same pictures or None)."""

    trace_input: torch.Tensor
    cases: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    batches: tuple[int, ...]


def _image_checks(extractor: FeatureExtractor, dynamic_batch: bool) -> _Checks:
    traced = sample_images(extractor, 4, seed=0)
    samples = sample_images(extractor, 4, seed=1)  # parity is checked on other images than the traced ones
    batches = (len(samples), 1) if dynamic_batch else (1,)
    with torch.no_grad():
        reference = NormalisedEmbedder(extractor.model)(samples).numpy()
    cases = [(samples[:size].numpy(), reference[:size], None) for size in batches]
    return _Checks(traced if dynamic_batch else traced[:1], cases, batches)


def _crop_embedder(embedder: nn.Module, extractor: FeatureExtractor, bgr: bool) -> CropEmbedder:
    return CropEmbedder(embedder, (extractor.height, extractor.width), extractor.mean, extractor.std, bgr)


def _crop_checks(extractor: FeatureExtractor, dynamic_batch: bool, bgr: bool) -> _Checks:
    """Crops of several sizes, one at a time (and three of one size together for a dynamic
    batch); traced on a size none of them has, so no size is baked into the graph."""
    reference_module = _crop_embedder(NormalisedEmbedder(extractor.model), extractor, bgr)
    crops = sample_crops(extractor, seed=1)
    groups = [[crop] for crop in crops] + (
        [sample_crops(extractor, seed=2)[1:2] * 3] if dynamic_batch else []
    )
    cases = []
    for group in groups:
        fed = np.stack([crop[:, :, ::-1] if bgr else crop for crop in group])
        with torch.no_grad():
            expected = reference_module(torch.from_numpy(np.ascontiguousarray(fed))).numpy()
            evaluation = NormalisedEmbedder(extractor.model)(extractor.preprocess(group)).numpy()
        cases.append((np.ascontiguousarray(fed), expected, evaluation))
    height, width = round(extractor.height * 1.3) + 1, round(extractor.width * 1.3) + 1
    trace = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8))
    return _Checks(
        trace.repeat(2, 1, 1, 1) if dynamic_batch else trace, cases, (3, 1) if dynamic_batch else (1,)
    )


def _publish(temporary: Path, output: Path) -> None:
    """Give the checked file its name, never replacing a file that appeared meanwhile."""
    taken = ValueError(f"{output} exists; choose another --output (nothing was overwritten)")
    try:
        os.link(temporary, output)
    except FileExistsError:
        raise taken from None
    except OSError:  # a file system without hard links
        if output.exists():
            raise taken from None
        os.replace(temporary, output)


def _write_onnx(model: nn.Module, sample: torch.Tensor, path: Path, contract: dict, dynamic: bool) -> None:
    import onnx

    name = contract["input"]["name"]
    options: dict[str, Any] = {
        "input_names": [name],
        "output_names": ["features"],
        "opset_version": ONNX_OPSET,
    }
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=4096)} if dynamic else {}
    if name == "crops":  # any crop size (from 2 x 2 pixels)
        dims |= {
            1: torch.export.Dim("height", min=2, max=16384),
            2: torch.export.Dim("width", min=2, max=16384),
        }
    if dims:
        options["dynamic_shapes"] = {name: dims}
    with torch.no_grad():
        program = torch.onnx.export(model, (sample,), dynamo=True, verbose=False, **options)
    program.save(str(path))
    written = onnx.load(str(path))
    entry = written.metadata_props.add()
    entry.key, entry.value = "reidgraft", json.dumps(contract)
    onnx.save(written, str(path))


def _onnx_runner(path: Path, contract: dict):
    import onnxruntime

    name = contract["input"]["name"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.uint8 if name == "crops" else np.float32
    return lambda inputs: session.run(["features"], {name: inputs.astype(dtype)})[0]


@contextlib.contextmanager
def _torchscript_quietly():
    """torch 2.14 warns that torch.jit is deprecated at every trace, save and load; TorchScript is
    still what C++ and tracker runtimes load (boxmot's TorchscriptBackend among them), so the
    warning would only alarm users of an export they asked for."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit\.\w+` is deprecated", FutureWarning)
        yield


def _write_torchscript(
    model: nn.Module, sample: torch.Tensor, path: Path, contract: dict, dynamic: bool
) -> None:
    with torch.no_grad(), _torchscript_quietly():
        traced = torch.jit.trace(model, (sample,), check_trace=False)
    # Saved into memory first, then written by Python: torch.jit.save's own file writer calls
    # std::terminate when the disk fills up, killing the process with the temporary file left.
    buffer = io.BytesIO()
    with _torchscript_quietly():
        torch.jit.save(traced, buffer, _extra_files={METADATA_NAME: json.dumps(contract)})
    with open(path, "wb") as file:
        file.write(buffer.getbuffer())
        file.flush()
        os.fsync(file.fileno())


def _torchscript_runner(path: Path, contract: dict):
    with _torchscript_quietly():
        loaded = torch.jit.load(str(path), map_location="cpu").eval()

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(images)).numpy()

    return run


def _write_openvino(
    model: nn.Module, sample: torch.Tensor, path: Path, contract: dict, dynamic: bool
) -> None:
    """Through ONNX (the graph checked above, dynamic dimensions kept): FILE.xml and FILE.bin."""
    import openvino

    onnx_file = new_temporary(path.with_name(path.name + ".onnx"))
    try:
        _write_onnx(model, sample, onnx_file, contract, dynamic)
        converted = openvino.convert_model(str(onnx_file))
    finally:
        onnx_file.unlink(missing_ok=True)
        onnx_file.with_name(onnx_file.name + ".data").unlink(missing_ok=True)
    converted.set_rt_info(json.dumps(contract), ["framework", "reidgraft"])
    # (OpenVINO writes PATH's stem + .bin beside it; fp32 weights, as checked)
    openvino.save_model(converted, str(path), compress_to_fp16=False)


def _openvino_runner(path: Path, contract: dict):
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", OPENVINO_CONFIG)
    output = compiled.outputs[0]
    return lambda images: np.asarray(compiled([images.astype(np.float32)])[output])


def _write_weights(model: nn.Module, sample: torch.Tensor, path: Path, contract: dict, dynamic: bool) -> None:
    """Model k's state dict alone, tensors cloned off the checkpoint's storage (else torch.save
    would write every model's storage), in fp32."""
    state = {key: value.detach().float().clone() if value.is_floating_point() else value.clone()
             for key, value in model.model.state_dict().items()}  # fmt: skip
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with open(path, "wb") as file:
        file.write(buffer.getbuffer())
        file.flush()
        os.fsync(file.fileno())


def model_from_weights(path: str | Path, contract: dict) -> nn.Module:
    """A model built afresh as the contract describes (torchreid's own `build_model` where the
    layout is torchreid's), with the weights file loaded strictly, in eval mode on the CPU."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if contract.get("torchreid_layout"):
        from .models.registry import _torchreid_models

        model = _torchreid_models().build_model(contract["arch"], num_classes=contract["num_classes"],
                                                pretrained=False)  # fmt: skip
    else:
        model = build_reid_model(contract["arch"], contract["num_classes"], **contract["head"])
    model.load_state_dict(state)
    return model.eval()


def _weights_runner(path: Path, contract: dict):
    model = model_from_weights(path, contract)

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return nn.functional.normalize(model(torch.from_numpy(images)), dim=1).numpy()

    return run


def _writer_and_runner(fmt: str):
    """Each format's (writer, runner), looked up when called (tests replace a writer)."""
    return {
        "onnx": (_write_onnx, _onnx_runner),
        "torchscript": (_write_torchscript, _torchscript_runner),
        "openvino": (_write_openvino, _openvino_runner),
        "weights": (_write_weights, _weights_runner),
    }[fmt]


def read_contract(path: str | Path) -> dict[str, Any]:
    """The contract stored inside an exported file (ONNX, TorchScript, OpenVINO; FILE.json for
    weights, which hold nothing else)."""
    path = Path(path)
    if path.suffix == ".xml":
        import openvino

        return json.loads(
            openvino.Core().read_model(str(path)).get_rt_info(["framework", "reidgraft"]).astype(str)
        )
    if path.suffix in SUFFIXES["weights"] and contract_file(path).exists():
        beside = json.loads(contract_file(path).read_text())
        if beside.get("format") == "weights":  # (a plain state dict holds nothing else)
            return beside
    if path.suffix == ".onnx":
        import onnx

        props = {
            entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props
        }
        return json.loads(props["reidgraft"])
    extra = {METADATA_NAME: ""}
    with _torchscript_quietly():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_NAME])
