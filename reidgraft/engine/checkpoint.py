"""The checkpoint file: one `torch.save` of tensors, numbers, strings, lists and dicts, so it loads
with `torch.load(weights_only=True)` (torch >= 2.6 refuses anything else by default), written
atomically; and the RNG states it carries. Which file lives where is `run_dir.py`'s business.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda file: torch.save(payload, file))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """One checkpoint file, loaded on the CPU; ValueError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
        size = path.stat().st_size
        raise ValueError(
            f"{path} is not a reidgraft checkpoint or is damaged ({size} bytes; torch.load says {reason}); "
            "point at a run folder or its checkpoint.pt"
        ) from None
    if not isinstance(payload, dict) or "models" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not a reidgraft checkpoint (no models and config in it)")
    return payload


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, in a weights_only-loadable form."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Every RNG as saved. CUDA generators are restored for the GPUs both hosts have: a run saved
    with 4 visible GPUs resumes on a host that shows 1 (or none)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        for index, generator_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(generator_state, index)
