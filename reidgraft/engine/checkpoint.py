"""The checkpoint file: one `torch.save` of tensors, numbers, strings, lists and dicts, so it loads
with `torch.load(weights_only=True)` (torch >= 2.6 refuses anything else by default), written
atomically; and the RNG states it carries. Which file lives where is `run_dir.py`'s business.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ..files import atomic_write

# (torch is imported in the functions that use it: the run folder's checks run before torch loads)

# 2: each participant's state under "participants" and the trainer's "exchange_pending"; a
# format 1 checkpoint is read through OLD_KEYS (`upgrade_checkpoint`)
CHECKPOINT_FORMAT = 2
# format 1 key -> where format 2 keeps it
OLD_KEYS = {"graft_pending": ("exchange_pending",), "ema": ("participants", "ema", "copies")}


def upgrade_checkpoint(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint in this code's layout: a format 1 one (saved before participants had state
    of their own) with its keys moved where format 2 keeps them; a format 2 one as it is."""
    if "participants" in payload and "exchange_pending" in payload:
        return payload
    payload = dict(payload)
    payload.setdefault("participants", {})
    payload.setdefault("exchange_pending", False)
    for old, (key, *inner) in OLD_KEYS.items():
        if old not in payload:
            continue
        value = payload.pop(old)
        if not inner:
            payload[key] = value
        elif value:  # (an EMA-less run saved an empty list)
            name, entry = inner
            payload[key] = {**payload[key], name: {entry: value}}
    return payload


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    atomic_write(path, lambda file: torch.save(payload, file))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """One checkpoint file, loaded on the CPU; ValueError naming the file if it is not one."""
    import torch

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
    problem = _structure_problem(payload)
    if problem:
        raise ValueError(
            f"{path} is not a complete reidgraft checkpoint ({problem}); it was edited or damaged: "
            "point at another run, or train again"
        )
    return upgrade_checkpoint(payload)


def _is_count(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _structure_problem(payload: dict[str, Any]) -> str | None:
    """What a loaded checkpoint lacks that every reader needs (before any model is built), or None."""
    config, models = payload["config"], payload["models"]
    if not isinstance(config, dict):
        return f"its config is a {type(config).__name__}, not a mapping"
    if not isinstance(config.get("arch"), str) or not config["arch"]:
        return "its config names no arch"
    if not isinstance(models, list) or not models or not all(isinstance(state, dict) for state in models):
        return "its models are not a list of weights"
    if not _is_count(payload.get("num_classes"), 1):
        return f"num_classes {str(payload.get('num_classes'))[:40]} is not a count of classes"
    if not _is_count(payload.get("epoch"), 0):
        return f"epoch {str(payload.get('epoch'))[:40]} is not an epoch number"
    return None


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, in a weights_only-loadable form."""
    import torch

    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Every RNG as saved. CUDA generators are restored for the GPUs both hosts have: a run saved
    with 4 visible GPUs resumes on a host that shows 1 (or none)."""
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        for index, generator_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(generator_state, index)
