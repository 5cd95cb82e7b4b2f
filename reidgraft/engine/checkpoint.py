"""Checkpoints and run files, written atomically: a temporary file in the same folder, flushed,
then renamed over the old one. An interrupted write leaves the previous file intact.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
`torch.load(weights_only=True)` (torch >= 2.6 refuses anything else by default).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call `write(file)` on a temporary sibling of `path`, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:  # Ctrl-C included: never leave the temporary file behind
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda file: file.write(text), mode="w")


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, lambda file: torch.save(payload, file))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a reidgraft checkpoint on the CPU; ValueError with the file's name if it is not one.

    A distributed run's folder (one `rank<k>/checkpoint.pt` per model) loads as one payload with
    every model in order, for evaluation and analysis (`"ranks"` says so; it cannot be resumed)."""
    path = Path(path)
    if (
        path.is_dir()
        and not (path / CHECKPOINT_NAME).exists()
        and (path / "rank0" / CHECKPOINT_NAME).exists()
    ):
        return _merged_ranks(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise ValueError(f"cannot load checkpoint {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(payload, dict) or "models" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not a reidgraft checkpoint (no models and config in it)")
    return payload


def _merged_ranks(run_dir: Path) -> dict[str, Any]:
    """Every rank's model of a distributed run, from the epoch they all saved last."""
    payloads = [load_checkpoint(folder / CHECKPOINT_NAME) for folder in sorted(run_dir.glob("rank*"))]
    payloads.sort(key=lambda payload: payload.get("model_ids", [0])[0])
    count = payloads[0]["config"]["models"]
    ids = [payload.get("model_ids", [None])[0] for payload in payloads]
    if ids != list(range(count)):
        raise ValueError(
            f"{run_dir} holds the checkpoints of models {ids}; a run of {count} needs 0..{count - 1}"
        )
    epochs = {payload["epoch"] for payload in payloads}
    if len(epochs) > 1:
        raise ValueError(
            f"the ranks of {run_dir} saved different epochs {sorted(epochs)}; resume the run first"
        )
    merged = {
        key: payloads[0][key] for key in ("format", "task", "config", "num_classes", "epoch", "history")
    }
    return {**merged, "models": [payload["models"][0] for payload in payloads], "ranks": count}


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, in a weights_only-loadable form."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
