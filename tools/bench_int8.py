"""Time an int8 ONNX export against its fp32 source on this CPU (onnxruntime, one thread per
core), with what the int8 file keeps of the features: the numbers `export --int8` gates on.

    python tools/bench_int8.py RUN_DIR [--batches 1 32] [--seconds 5]

The fp32 file is `export --format onnx --dynamic-batch`'s; the int8 file is that file quantized
as `export --int8` quantizes it (`reidgraft.export.quantize_onnx`, activation ranges from the
run's training crops), written to a temporary folder whatever its gate says. Both run on the
same preprocessed validation crops, in turn, each batch size for about SECONDS seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def crops_per_second(session, images: np.ndarray, batch: int, seconds: float) -> float:
    inputs = images[:batch]
    session.run(["features"], {"images": inputs})  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(["features"], {"images": inputs})
        done += batch
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    import onnxruntime

    import reidgraft
    from reidgraft.export import _int8_data, _quantize_int8, export_model

    extractor = reidgraft.FeatureExtractor(args.run_dir, device="cpu", amp="none")
    data = _int8_data(extractor)
    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        report = export_model(args.run_dir, fp32, "onnx", dynamic_batch=True)
        gate = _quantize_int8(fp32, int8, data, True, report.contract)
        print(f"{extractor!r}")
        print(
            gate.line(), "(passes the gate)" if gate.ok else "(FAILS the gate: export --int8 writes nothing)"
        )
        images = np.concatenate([data["images"]] * (1 + max(args.batches) // len(data["images"])))
        sessions = {
            name: onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            for name, path in (("fp32", fp32), ("int8", int8))
        }
        for batch in args.batches:
            rates = {name: crops_per_second(s, images, batch, args.seconds) for name, s in sessions.items()}
            each = {name: f"{rate:.0f} crops/s ({1000 / rate:.2f} ms each)" for name, rate in rates.items()}
            ratio = rates["int8"] / rates["fp32"]
            print(f"batch {batch}: fp32 {each['fp32']}, int8 {each['int8']}: int8 {ratio:.2f}x")


if __name__ == "__main__":
    main()
