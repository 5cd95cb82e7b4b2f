"""Where and how models run: the device a name stands for, the devices of the in-process ring,
mixed precision (autocast), memory format, and deterministic mode."""

from __future__ import annotations

import contextlib
import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (torch is imported in the functions: the config reads AMP_MODES without it)
    import torch

AMP_MODES = ("none", "bf16", "fp16")

# Defaults chosen from measurements (`tools/bench_train.py --sweep`, docs/performance.md): a
# setting is the default only where it was faster AND the quick recipe's mAP stayed within 1 point
# of fp32. On the project's 2-core AVX512-BF16 CPU channels_last helped every backbone and size
# measured (1.1-1.7x); whether bf16 autocast pays depends on the backbone and the input size, which
# its spec says (`models/registry.py`). bf16 is never the default where CPU bf16 goes wrong (the
# caller's `bf16_refusal`). On one H200 at batch 32 the step is launch-bound: bf16 was
# slower than fp32 (0.84-0.92x) and channels_last gained 1.03-1.19x, unchecked on the quick
# recipe's mAP; so CUDA keeps fp32 (cuDNN's TF32 convolutions) in the contiguous layout by default.


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when torch sees a GPU, else the CPU; `cuda` without one is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def ring_devices(device: str, ids: list[int], count: int) -> list[torch.device]:
    """The device of each of `count` models: all on `device`, or model k on GPU ids[k % n]."""
    import torch

    if not ids:
        return [resolve_device(device)] * count
    if not torch.cuda.is_available():
        raise ValueError(f"--devices {','.join(map(str, ids))} names GPUs, but torch sees no CUDA device")
    present = torch.cuda.device_count()
    missing = [i for i in ids if i >= present]
    if missing:
        raise ValueError(
            f"--devices names GPU {missing[0]}, but torch sees {present} (0..{present - 1}); "
            "check CUDA_VISIBLE_DEVICES"
        )
    return [torch.device("cuda", ids[k % len(ids)]) for k in range(count)]


def default_precision(device: torch.device, bf16_gains: bool) -> tuple[str, bool]:
    """The measured default (amp, channels_last) on `device`'s kind; `bf16_gains`: whether bf16
    autocast pays on the CPU for this backbone at this input size (its spec says)."""
    if device.type == "cpu":
        return ("bf16" if bf16_gains and cpu_has_bf16() else "none"), True
    return "none", False


def resolve_precision(
    amp: str,
    channels_last: bool | None,
    device: torch.device,
    *,
    bf16_gains: bool,
    bf16_refusal: str | None = None,
) -> tuple[str, bool]:
    """(amp, channels_last) with `auto`/None replaced by the measured default; ValueError (one
    line) for a precision this hardware lacks.

    `bf16_refusal`: where CPU bf16 goes wrong (a backbone's spec words it): the default falls
    back to fp32, and an explicit `--amp bf16` is refused with that line."""
    import torch

    default_amp, default_layout = default_precision(device, bf16_gains)
    if bf16_refusal and device.type == "cpu":
        if amp == "bf16":
            raise ValueError(bf16_refusal)
        default_amp = "none"
    amp = default_amp if amp == "auto" else amp
    channels_last = default_layout if channels_last is None else channels_last
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(
            "--amp fp16 needs a CUDA GPU (fp16 autocast with a gradient scaler); on CPU use --amp bf16"
        )
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bf16; use --amp fp16")
    if amp == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise ValueError("--amp bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX); use --amp none")
    return amp, channels_last


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


@functools.cache
def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def autocast(device: torch.device, amp: str):
    """Autocast to `amp`'s dtype on `device`, or nothing for `none`."""
    import torch

    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[amp])


def make_deterministic() -> None:
    """Deterministic kernels (same run, same numbers), at some cost in speed.

    On CUDA a few kernels have no deterministic version (adaptive average pooling's and NLL
    loss's backward among those torchreid's backbones use); torch warns once for each and uses
    the fast one (`warn_only`), so a deterministic CUDA run trains instead of failing in its first
    backward, and is reproducible except for those ops. On CPU every op used is deterministic."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    torch.backends.cudnn.benchmark = False


def allow_fast_kernels() -> None:
    """Not deterministic: let cuDNN pick the fastest convolution for each input shape."""
    import torch

    torch.backends.cudnn.benchmark = True
