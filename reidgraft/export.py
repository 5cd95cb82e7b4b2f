"""A trained re-ID model as an ONNX or TorchScript file, with its contract written beside it and
its parity with PyTorch checked by running the exported file.

The contract, one of two inputs (`input`):
- `images` (the default): float32 NCHW images at the run's input size, normalised with
  ImageNet's mean and std (torchreid's test transform), which the caller must reproduce;
- `crops`: uint8 NHWC crops of ANY size, as a tracker cuts them from a frame (RGB, or BGR with
  `bgr=True` for OpenCV frames). The graph itself resizes them as evaluation does (PIL's
  antialiased bilinear, rounded to 8 bits) and normalises them, so a tracker gets evaluation's
  features whatever resize it would have used (OpenCV's INTER_LINEAR does not antialias, and
  moves features far from evaluation's on crops larger than the model's input).
Out: L2-normalised float32 features, to be compared by cosine similarity. The contract is stored
in the file's own metadata (ONNX metadata_props, a TorchScript extra file) and in FILE.json. The
file is written under a temporary name and run there; it gets its name only when it matches
PyTorch, and an existing file is never replaced.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .extractor import FeatureExtractor
from .files import DiskFull, atomic_write_json, new_temporary, no_space_inside

FORMATS = ("onnx", "torchscript")
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
# crops: the export is also checked against FeatureExtractor (PIL's resize, evaluation's path) on
# crops of several sizes; each feature must keep at least this cosine with FeatureExtractor's
CROP_MIN_COSINE = 0.999
CROP_RESIZE = "inside the model: PIL's antialiased bilinear, pixel for pixel (torchreid's test transform)"
CROP_SIZES = ((1, 1), (4, 4), (0.5, 0.5), (1.7, 0.6))  # sample crop sizes, as multiples of (height, width)


PIL_PRECISION_BITS = 22  # PIL's fixed-point resampling coefficients: 32 - 8 - 2 bits


def _pil_coefficients(positions: torch.Tensor, out_size: int) -> torch.Tensor:
    """PIL's bilinear resampling weights from an axis of len(positions) pixels to `out_size`, as
    its Resample.c computes them (antialiased: the triangle widens by the reduction factor;
    normalised per output pixel; in fixed point), as an out_size x len(positions) float64 matrix.
    `positions` (0, 1, ..., n - 1) is made from the input itself, so no size is baked in a graph."""
    count = positions[-1:] + 1
    scale = count / out_size
    support = scale.clamp(min=1.0)  # bilinear's support 1, widened when reducing
    center = (torch.arange(out_size, dtype=torch.float64).unsqueeze(1) + 0.5) * scale
    first = (center - support + 0.5).floor().clamp(min=0)
    end = torch.minimum((center + support + 0.5).floor(), count)
    pixel = positions.unsqueeze(0)
    weights = (1 - ((pixel - center + 0.5) / support).abs()).clamp(min=0) * ((pixel >= first) & (pixel < end))
    weights = weights / weights.sum(1, keepdim=True)
    return (weights * (1 << PIL_PRECISION_BITS) + 0.5).floor()


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
        weights = _pil_coefficients(positions, width)
        half = float(1 << (PIL_PRECISION_BITS - 1))
        return ((pixels @ weights.T + half) / (1 << PIL_PRECISION_BITS)).floor().clamp(0, 255)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        pixels = crops.permute(0, 3, 1, 2).double()
        if self.bgr:
            pixels = pixels.flip(1)
        height, width = self.size
        pixels = self._across(pixels, width)  # PIL's order: across first, then down
        pixels = self._across(pixels.transpose(2, 3), height).transpose(2, 3).float()
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

    @property
    def ok(self) -> bool:
        faithful = self.evaluation_cosine is None or self.evaluation_cosine >= self.evaluation_floor
        return self.max_abs_difference <= self.tolerance and self.min_cosine >= self.cosine_floor and faithful


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
    return {
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


def check_export_tools(fmt: str) -> None:
    """ValueError (one line) when the `export` extra that ONNX needs is not installed."""
    if fmt != "onnx":
        return
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"ONNX export needs {error.name or 'onnx'}, which is not installed; "
            "pip install -e '.[export]' (scripts/setup.sh installs it)"
        ) from None


# the file names each format's readers expect (read_contract and others go by the suffix)
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts", ".torchscript")}


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
) -> ExportReport:
    """Write model k of the run to `output` in `fmt` and its contract to FILE.json, once the
    written file, run on sample inputs, matches PyTorch within the tolerance (and, for `crops`,
    FeatureExtractor's features of the same crops within CROP_MIN_COSINE). When it does not,
    nothing is written and the report says by how much."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if input_kind not in INPUTS:
        raise ValueError(f"unknown input {input_kind!r}; choose one of: {', '.join(INPUTS)}")
    if bgr and input_kind != "crops":
        raise ValueError("--bgr is for --input crops (images are normalised RGB tensors); add --input crops")
    output = Path(output)
    wanted = SUFFIXES[fmt]
    if output.suffix not in wanted:
        raise ValueError(
            f"--output {output}: {'an' if fmt == 'onnx' else 'a'} {fmt} file is named "
            f"*{' or *'.join(wanted)} (reidgraft and other tools read it by its suffix); "
            f"write {output.with_suffix(wanted[0]).name}"
        )
    for path in (output, contract_file(output)):
        if path.exists():
            raise ValueError(f"{path} exists; choose another --output (nothing was overwritten)")
    check_export_tools(fmt)
    extractor = FeatureExtractor(run_dir, model=model, device="cpu", amp="none")
    extractor.model.float().to(memory_format=torch.contiguous_format)
    contract = contract_of(extractor, fmt, dynamic_batch, fp16, input_kind, bgr)
    checks = _crop_checks(extractor, dynamic_batch, bgr) if input_kind == "crops" else _image_checks(
        extractor, dynamic_batch
    )  # fmt: skip
    exported = NormalisedEmbedder(extractor.model, fp16=fp16)
    if input_kind == "crops":
        exported = _crop_embedder(exported, extractor, bgr)
    write, runner = (
        (_write_onnx, _onnx_runner) if fmt == "onnx" else (_write_torchscript, _torchscript_runner)
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = new_temporary(output)
    try:
        try:
            write(exported, checks.trace_input, temporary, contract, dynamic_batch)
        except BaseException as error:
            if no_space_inside(error):  # (ONNX's writer raises the OSError itself)
                raise DiskFull(output) from None
            raise
        run = runner(temporary, contract["input"]["name"])
        difference, cosine, fidelity = 0.0, 1.0, 1.0
        for inputs, expected, evaluation in checks.cases:
            got = run(inputs)
            if not np.isfinite(got).all():  # (max and min would pass over a NaN)
                difference, cosine, fidelity = math.inf, -1.0, -1.0
                break
            difference = max(difference, float(np.abs(got - expected).max()))
            cosine = min(cosine, _smallest_cosine(got, expected))
            if evaluation is not None:
                fidelity = min(fidelity, _smallest_cosine(got, evaluation))
        tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
        floor = FP16_MIN_COSINE if fp16 else FP32_MIN_COSINE
        report = ExportReport(
            output, contract, difference, tolerance, checks.batches, cosine, floor,
            fidelity if input_kind == "crops" else None,
        )  # fmt: skip
        if report.ok:
            _publish(temporary, output)
            atomic_write_json(contract_file(output), contract)
    finally:  # an error or Ctrl-C leaves nothing behind
        temporary.unlink(missing_ok=True)
        # ONNX weights past torch's large-model threshold are first saved beside the file
        temporary.with_name(temporary.name + ".data").unlink(missing_ok=True)
    return report


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


def _onnx_runner(path: Path, name: str = "images"):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.uint8 if name == "crops" else np.float32
    return lambda inputs: session.run(["features"], {name: inputs.astype(dtype)})[0]


def _write_torchscript(
    model: nn.Module, sample: torch.Tensor, path: Path, contract: dict, dynamic: bool
) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(model, (sample,), check_trace=False)
    # Saved into memory first, then written by Python: torch.jit.save's own file writer calls
    # std::terminate when the disk fills up, killing the process with the temporary file left.
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={METADATA_NAME: json.dumps(contract)})
    with open(path, "wb") as file:
        file.write(buffer.getbuffer())
        file.flush()
        os.fsync(file.fileno())


def _torchscript_runner(path: Path, name: str = "images"):
    loaded = torch.jit.load(str(path), map_location="cpu").eval()

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(images)).numpy()

    return run


def read_contract(path: str | Path) -> dict[str, Any]:
    """The contract stored inside an exported file (ONNX or TorchScript)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {
            entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props
        }
        return json.loads(props["reidgraft"])
    extra = {METADATA_NAME: ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_NAME])
