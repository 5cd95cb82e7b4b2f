"""A trained re-ID model as an ONNX or TorchScript file, with its contract written beside it and
its parity with PyTorch checked by running the exported file.

The contract: float32 NCHW images at the run's input size, normalised with ImageNet's mean and
std (torchreid's test transform), in; L2-normalised float32 features, out. It is stored in the
file's own metadata (ONNX metadata_props, a TorchScript extra file) and in FILE.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .extractor import FeatureExtractor
from .files import atomic_write_json

FORMATS = ("onnx", "torchscript")
FP32_TOLERANCE = 1e-4  # the largest absolute difference from PyTorch an fp32 export may show
FP16_TOLERANCE = 2e-2  # fp16 weights and activations: about 3 significant digits
METADATA_NAME = "reidgraft.json"  # the TorchScript extra file holding the contract
ONNX_OPSET = 18


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
    output: Path
    contract: dict[str, Any]
    max_abs_difference: float
    tolerance: float
    checked_batches: tuple[int, ...]

    @property
    def ok(self) -> bool:
        return self.max_abs_difference <= self.tolerance


def contract_of(extractor: FeatureExtractor, fmt: str, dynamic_batch: bool, fp16: bool) -> dict[str, Any]:
    return {
        "format": fmt,
        "run": str(extractor.run_dir),
        "model": extractor.k,
        "arch": extractor.arch,
        "input": {
            "name": "images",
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "height": extractor.height,
            "width": extractor.width,
            "batch": "dynamic" if dynamic_batch else 1,
            "normalisation": "(pixel / 255 - mean) / std",
            "mean": list(extractor.mean),
            "std": list(extractor.std),
            "resize": "bilinear to height x width, as torchreid's test transform",
        },
        "output": {"name": "features", "dtype": "float32", "dim": extractor.dim, "l2_normalised": True},
        "metric": extractor.metric,
        "precision": "fp16" if fp16 else "fp32",
    }


def sample_images(extractor: FeatureExtractor, count: int, seed: int = 0) -> torch.Tensor:
    """`count` preprocessed images: random pictures put through the run's own preprocessing."""
    rng = np.random.default_rng(seed)
    pictures = [
        rng.integers(0, 256, (extractor.height, extractor.width, 3), dtype=np.uint8) for _ in range(count)
    ]
    return extractor.preprocess(pictures)


def export_model(
    run_dir: str | Path,
    output: str | Path,
    fmt: str,
    *,
    model: int | None = None,
    dynamic_batch: bool = False,
    fp16: bool = False,
    samples: torch.Tensor | None = None,
) -> ExportReport:
    """Write model k of the run to `output` in `fmt`, its contract beside it, and check parity."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    output = Path(output)
    extractor = FeatureExtractor(run_dir, model=model, device="cpu", amp="none")
    extractor.model.float().to(memory_format=torch.contiguous_format)
    contract = contract_of(extractor, fmt, dynamic_batch, fp16)
    if samples is None:
        samples = sample_images(extractor, 4)
    batches = (len(samples), 1) if dynamic_batch else (1,)
    trace_input = samples[:1] if not dynamic_batch else samples
    with torch.no_grad():
        reference = NormalisedEmbedder(extractor.model)(samples).numpy()
    embedder = NormalisedEmbedder(extractor.model, fp16=fp16)
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        _write_onnx(embedder, trace_input, output, contract, dynamic_batch)
        run = _onnx_runner(output)
    else:
        _write_torchscript(embedder, trace_input, output, contract)
        run = _torchscript_runner(output)
    atomic_write_json(output.with_name(output.name + ".json"), contract)
    difference = 0.0
    for size in batches:
        got = run(samples[:size].numpy())
        difference = max(difference, float(np.abs(got - reference[:size]).max()))
    tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    return ExportReport(output, contract, difference, tolerance, batches)


def _write_onnx(model: nn.Module, sample: torch.Tensor, output: Path, contract: dict, dynamic: bool) -> None:
    import onnx

    temporary = output.with_name(f".{output.name}.partial")
    options: dict[str, Any] = {
        "input_names": ["images"],
        "output_names": ["features"],
        "opset_version": ONNX_OPSET,
    }
    if dynamic:
        options["dynamic_shapes"] = {"images": {0: torch.export.Dim("batch", min=1, max=4096)}}
    with torch.no_grad():
        program = torch.onnx.export(model, (sample,), dynamo=True, verbose=False, **options)
    program.save(str(temporary))
    written = onnx.load(str(temporary))
    for key, value in (("reidgraft", json.dumps(contract)),):
        entry = written.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(written, str(temporary))
    temporary.replace(output)


def _onnx_runner(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: session.run(["features"], {"images": images.astype(np.float32)})[0]


def _write_torchscript(model: nn.Module, sample: torch.Tensor, output: Path, contract: dict) -> None:
    temporary = output.with_name(f".{output.name}.partial")
    with torch.no_grad():
        traced = torch.jit.trace(model, (sample,), check_trace=False)
    torch.jit.save(traced, str(temporary), _extra_files={METADATA_NAME: json.dumps(contract)})
    temporary.replace(output)


def _torchscript_runner(path: Path):
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
