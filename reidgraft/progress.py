"""Progress of a long loop (an epoch, a feature extraction, a gallery's indexing): a tqdm bar on
a terminal; anywhere else (nohup, SLURM, `docker logs`, a pipe), where a bar would be switched
off and a long epoch would print nothing, one flushed line every REIDGRAFT_LOG_SECONDS seconds
(default 30; 0: none) with the rate and the time left, and a last line when it is done.
Both go to stderr, as tqdm's bar does."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

LOG_SECONDS_VARIABLE = "REIDGRAFT_LOG_SECONDS"
DEFAULT_LOG_SECONDS = 30.0

T = TypeVar("T")


def log_seconds() -> float:
    """Seconds between two progress lines off a terminal (REIDGRAFT_LOG_SECONDS; 0: none)."""
    text = os.environ.get(LOG_SECONDS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_LOG_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(
            f"{LOG_SECONDS_VARIABLE}={text!r}: give the seconds between progress lines (e.g. 30; 0: none)"
        )
    return seconds


def duration(seconds: float) -> str:
    """4s, 3m05s, 2h01m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts steps of `total` (`update(n)`); `per_step` items (images) per step give a rate in
    items/s. A bar on a terminal, timed lines elsewhere; `close()` (or a with block) ends it."""

    def __init__(
        self, total: int, what: str, unit: str = "batches", per_step: float | None = None,
        items: str = "images", stream: IO[str] | None = None, initial: int = 0,
    ):  # fmt: skip
        self.total, self.what, self.unit, self.per_step, self.items = total, what, unit, per_step, items
        self.stream = stream or sys.stderr
        # `initial`: steps done before (a resumed extraction), counted but no part of the rate
        self.initial = self.done = initial
        self.started = time.monotonic()
        self.every = log_seconds() if what else 0.0  # (an unnamed loop is part of a named one)
        self.last_line, self.lines = self.started, 0
        self.bar = None
        if _is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=what or None, unit=unit, leave=False, file=self.stream
            )

    def update(self, steps: int = 1, now: float | None = None) -> None:
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
            return
        now = time.monotonic() if now is None else now
        if self.every and now - self.last_line >= self.every and self.done < self.total:
            self._say(self._state(now))
            self.last_line = now

    def _state(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        rate = (self.done - self.initial) / elapsed
        speed = (
            f", {rate * self.per_step:.1f} {self.items}/s" if self.per_step else f", {rate:.2f} {self.unit}/s"
        )
        left = f", {duration((self.total - self.done) / rate)} left" if rate > 0 and self.total else ""
        return f"{self.done}/{self.total} {self.unit}{share}{speed}, {duration(elapsed)} so far{left}"

    def _say(self, text: str) -> None:
        print(f"{self.what}: {text}" if self.what else text, file=self.stream, flush=True)
        self.lines += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.lines:  # it said it was under way: say it ended
            self._say(
                f"{self.done}/{self.total} {self.unit} done in {duration(time.monotonic() - self.started)}"
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(
    iterable: Iterable[T], total: int, what: str, unit: str = "batches", per_step: float | None = None,
    items: str = "images",
) -> Iterator[T]:  # fmt: skip
    """`iterable`, counted by a Progress."""
    with Progress(total, what, unit, per_step, items) as counter:
        for element in iterable:
            yield element
            counter.update()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
