"""Atomic writes: a temporary file in the same folder, flushed, then renamed over the old one.
An interrupted write (Ctrl-C, a full disk) leaves the previous file intact."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


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
    """Standard JSON only: a NaN or an infinity (which `json` would write as bare `NaN`, invalid
    for every other reader) is a ValueError naming the file, and nothing is written."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False)
    except ValueError as error:
        raise ValueError(
            f"{path} would hold a value JSON cannot represent ({error}); nothing was written"
        ) from None
    atomic_write_text(path, text + "\n")
