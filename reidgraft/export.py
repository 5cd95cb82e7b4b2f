"""A trained re-ID model as an ONNX or TorchScript file, with its contract written beside it and
its parity with PyTorch checked by running the exported file.

The contract: float32 NCHW images at the run's input size, normalised with ImageNet's mean and
std (torchreid's test transform), in; L2-normalised float32 features, out, to be compared by
cosine similarity. It is stored in the file's own metadata (ONNX metadata_props, a TorchScript
extra file) and in FILE.json. The file is written under a temporary name and run there; it gets
its name only when it matches PyTorch, and an existing file is never replaced.
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

    @property
    def ok(self) -> bool:
        return self.max_abs_difference <= self.tolerance and self.min_cosine >= self.cosine_floor


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
    samples: torch.Tensor | None = None,
) -> ExportReport:
    """Write model k of the run to `output` in `fmt` and its contract to FILE.json, once the
    written file, run on sample images, matches PyTorch within the tolerance. When it does not,
    nothing is written and the report says by how much."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
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
    contract = contract_of(extractor, fmt, dynamic_batch, fp16)
    traced = sample_images(extractor, 4, seed=0)
    trace_input = traced if dynamic_batch else traced[:1]
    if samples is None:  # parity is checked on other images than the traced ones
        samples = sample_images(extractor, 4, seed=1)
    batches = (len(samples), 1) if dynamic_batch else (1,)
    with torch.no_grad():
        reference = NormalisedEmbedder(extractor.model)(samples).numpy()
    embedder = NormalisedEmbedder(extractor.model, fp16=fp16)
    write, runner = (
        (_write_onnx, _onnx_runner) if fmt == "onnx" else (_write_torchscript, _torchscript_runner)
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = new_temporary(output)
    try:
        try:
            write(embedder, trace_input, temporary, contract, dynamic_batch)
        except BaseException as error:
            if no_space_inside(error):  # (ONNX's writer raises the OSError itself)
                raise DiskFull(output) from None
            raise
        run = runner(temporary)
        difference, cosine = 0.0, 1.0
        for size in batches:
            got, expected = run(samples[:size].numpy()), reference[:size]
            if not np.isfinite(got).all():  # (max and min would pass over a NaN)
                difference, cosine = math.inf, -1.0
                break
            difference = max(difference, float(np.abs(got - expected).max()))
            norms = np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
            cosine = min(cosine, float(((got * expected).sum(axis=1) / np.maximum(norms, 1e-12)).min()))
        tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
        floor = FP16_MIN_COSINE if fp16 else FP32_MIN_COSINE
        report = ExportReport(output, contract, difference, tolerance, batches, cosine, floor)
        if report.ok:
            _publish(temporary, output)
            atomic_write_json(contract_file(output), contract)
    finally:  # an error or Ctrl-C leaves nothing behind
        temporary.unlink(missing_ok=True)
        # ONNX weights past torch's large-model threshold are first saved beside the file
        temporary.with_name(temporary.name + ".data").unlink(missing_ok=True)
    return report


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

    options: dict[str, Any] = {
        "input_names": ["images"],
        "output_names": ["features"],
        "opset_version": ONNX_OPSET,
    }
    if dynamic:
        options["dynamic_shapes"] = {"images": {0: torch.export.Dim("batch", min=1, max=4096)}}
    with torch.no_grad():
        program = torch.onnx.export(model, (sample,), dynamo=True, verbose=False, **options)
    program.save(str(path))
    written = onnx.load(str(path))
    entry = written.metadata_props.add()
    entry.key, entry.value = "reidgraft", json.dumps(contract)
    onnx.save(written, str(path))


def _onnx_runner(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: session.run(["features"], {"images": images.astype(np.float32)})[0]


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
