"""Export a run's model for use outside reidgraft: ONNX (checked with onnxruntime), TorchScript
(checked with torch.jit.load), OpenVINO (checked with its CPU runtime) or one model's weights
(checked by loading them into a model built afresh), with its input contract in FILE.json.

    reidgraft-export RUN_DIR --format {onnx,torchscript,openvino,weights} --output FILE [--model k]
                     [--dynamic-batch] [--fp16 | --int8] [--input {images,crops}] [--bgr] [--for boxmot]

The exported model takes float32 NCHW images at the run's size, normalised with ImageNet's mean
and std (`--input images`), or uint8 crops of any size, HWC, RGB or BGR with `--bgr`, that it
resizes and normalises itself exactly as evaluation does (`--input crops`: what trackers should
use), and returns L2-normalised features (compare them by cosine similarity). A crops export is
also checked against FeatureExtractor's features of the same crops (cosine at least 0.999). The file is
written under a temporary name and run on sample images; its largest absolute difference from
PyTorch is printed with the smallest cosine between their features; above 1e-4 (fp32; 2e-2 for
fp16), or below a cosine of 0.9999 (fp32; 0.998 for fp16), nothing is written and the command
exits 1. An existing FILE or FILE.json is never replaced. `--for boxmot` also writes
FILE.metadata.json, the sidecar boxmot's re-ID backends read (architecture, input size).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..export import CROP_SIZES, FORMATS, INPUTS, TRACKERS, boxmot_sidecar, export_model
from ..files import check_writable
from .entry import USER_ERRORS, report_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidgraft-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a reidgraft re-ID run folder (or its checkpoint.pt)")
    parser.add_argument(
        "--format", required=True, choices=FORMATS,
        help="onnx, torchscript, openvino (FILE.xml and FILE.bin) or weights (one model's state dict)",
    )  # fmt: skip
    parser.add_argument("--output", required=True, help="the file to write (refused if it exists)")
    parser.add_argument(
        "--model", type=int, help="which of the K models (default: the best of K on validation, else model 0)"
    )
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="any batch size (default: batches of one image)"
    )
    parser.add_argument(
        "--fp16", action="store_true", help="weights and activations in fp16 (inputs stay fp32)"
    )
    parser.add_argument(
        "--int8", action="store_true",
        help="onnx images only: quantized to int8 (onnxruntime static quantization, activation ranges "
        "from the run's training crops), written only if, on the run's validation identities, its "
        "features keep a mean cosine of 0.98 with fp32's and its mAP loses at most 0.5 points",
    )  # fmt: skip
    parser.add_argument(
        "--input", default="images", choices=INPUTS,
        help="images: float32 NCHW at the run's size, normalised by the caller (default); crops: "
        "uint8 N x H x W x 3 crops of any size, resized and normalised inside as evaluation does "
        "(for trackers: their features are evaluation's)",
    )  # fmt: skip
    parser.add_argument(
        "--bgr", action="store_true", help="with --input crops: the crops are BGR (OpenCV frames)"
    )
    parser.add_argument(
        "--for", dest="tracker", choices=TRACKERS,
        help="boxmot: a file boxmot loads as it is (dynamic batch, and its sidecar FILE.metadata.json)",
    )  # fmt: skip
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    try:
        check_writable(output.parent if str(output.parent) else Path("."))
        report = export_model(
            args.run_dir,
            output,
            args.format,
            model=args.model,
            dynamic_batch=args.dynamic_batch,
            fp16=args.fp16,
            input_kind=args.input,
            bgr=args.bgr,
            tracker=args.tracker,
            int8=args.int8,
        )
    except (*USER_ERRORS, ImportError, RuntimeError) as error:  # torch's export errors included
        return report_error("export", error)
    batches = ", ".join(str(size) for size in report.checked_batches)
    parity = (
        f"parity with PyTorch on sample images (batches of {batches}): max abs difference "
        f"{report.max_abs_difference:.3g} (limit {report.tolerance:g}), smallest cosine "
        f"{report.min_cosine:.6f} (limit {report.cosine_floor:g})"
    )
    if report.evaluation_cosine is not None:
        parity += (
            f"; smallest cosine with FeatureExtractor on crops of {len(CROP_SIZES)} sizes "
            f"{report.evaluation_cosine:.6f} (limit {report.evaluation_floor:g})"
        )
    if report.int8 is not None:
        parity += f" (the fp32 source); {report.int8.line()}"
    if not report.ok:
        if report.int8 is not None and not report.int8.ok:
            missed = f"int8 gate FAILED ({report.int8.failed()})"
        else:
            missed = "TOO LARGE"
        print(f"{parity}: {missed}; nothing was written", file=sys.stderr)
        return 1
    contract = report.contract
    shape = contract["input"]
    if args.input == "crops":
        taken = (
            f"input uint8 N x H x W x 3 {shape['channels']} crops of any size (batch {shape['batch']}), "
            f"resized inside to {shape['resized_to'][0]} x {shape['resized_to'][1]} as evaluation does"
        )
    else:
        taken = f"input float32 N x 3 x {shape['height']} x {shape['width']} (batch {shape['batch']})"
    if args.format == "weights":
        layout = (
            "torchreid's layout"
            if contract["torchreid_layout"]
            else "reidgraft's layout (BNNeck or last stride 1)"
        )
        print(
            f"wrote {report.output} (weights, model {contract['model']} of {contract['run']}, "
            f"{contract['arch']}, {layout}): {taken}, output {contract['output']['dim']} raw features "
            "(L2-normalise them); "
            f"contract in {report.output.name}.json"
        )
    else:
        written = (
            f"{report.output} and {report.output.with_suffix('.bin').name}"
            if args.format == "openvino"
            else report.output
        )
        print(
            f"wrote {written} ({args.format}, model {contract['model']} of {contract['run']}, "
            f"{contract['precision']}): {taken}, output {contract['output']['dim']} L2-normalised features; "
            f"contract in the file and in {report.output.name}.json"
        )
    print(f"{parity}: ok")
    if args.tracker == "boxmot":
        print(
            f"boxmot reads {boxmot_sidecar(report.output).name} beside it: e.g. "
            f"BotSort(reid_weights=Path({str(report.output)!r}), device='cpu', half=False)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
