"""Decoded images kept in memory between epochs and between the K models' loaders.

Every re-ID transform starts with the same deterministic resize to the input size, and a
training epoch decodes each image once per model (K loaders over one list), every epoch: on
CUHK01 at 128x64 decoding and resizing are about two thirds of a loader's time per image. The
cache keeps each image as the resize left it and hands a copy to the rest of the transform,
which draws its random numbers exactly as before (the resize draws none): batches are the same
bit for bit, with the cache or without.

Only for loading in the main process (`workers` 0, the CPU default): worker processes would
each fill their own copy. An image that does not fit the budget is decoded as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from ..images import read_rgb

MAX_CACHE_BYTES = 2 << 30  # at most 2 GiB, and at most a quarter of the memory available
PIL_OVERHEAD = 1.1  # a PIL image's bytes over its pixels' (measured ~1.05 at 128x64)


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes; None where it cannot be read."""
    try:
        with open("/proc/meminfo") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class DecodedImages:
    """Each image resized to the input size, by (path, the resize), up to `budget` bytes."""

    def __init__(self, budget: int):
        self.budget, self.used = budget, 0
        self.images: dict[tuple[str, str], Image.Image] = {}
        self.hits = self.misses = 0

    def read(self, path: str, resize: Callable[[Image.Image], Image.Image]) -> Image.Image:
        """`resize(read_rgb(path))`, decoded once; always a fresh copy, since some transforms
        (torchreid's random_patch) paint on the image they are given."""
        key = (str(path), repr(resize))
        image = self.images.get(key)
        if image is not None:
            self.hits += 1
            return image.copy()
        self.misses += 1
        image = resize(read_rgb(path))
        size = image.width * image.height * len(image.getbands())
        if self.used + size <= self.budget:
            self.images[key] = image
            self.used += size
            return image.copy()
        return image

    def __getstate__(self):  # a worker process starts with an empty cache of its own
        return {"budget": self.budget, "used": 0, "images": {}, "hits": 0, "misses": 0}


@dataclass(frozen=True)
class CachePlan:
    """Whether a run keeps decoded images (`cache`, or None) and why, for metrics.json."""

    setting: str
    cache: DecodedImages | None
    estimate: int  # bytes the run's images take once resized
    reason: str

    def record(self) -> dict[str, object]:
        return {
            "setting": self.setting,
            "kept": self.cache is not None,
            "mib": round(self.estimate / 2**20, 1),
            "why": self.reason,
        }


def plan_image_cache(
    setting: str, paths: Sequence[str], *, height: int, width: int, workers: int, budget: int | None = None
) -> CachePlan:
    """`auto` keeps the decoded images of `paths` (training, query and gallery) when they load in
    the main process and fit the budget (`MAX_CACHE_BYTES` and a quarter of the available
    memory); `none` never does."""
    distinct = len(set(paths))
    estimate = int(distinct * height * width * 3 * PIL_OVERHEAD)
    if budget is None:
        available = available_memory()
        budget = MAX_CACHE_BYTES if available is None else min(MAX_CACHE_BYTES, available // 4)
    if setting == "none":
        return CachePlan(setting, None, estimate, "turned off (--image-cache none)")
    if workers > 0:
        return CachePlan(setting, None, estimate, f"{workers} loader workers decode in parallel")
    mib = f"{estimate / 2**20:.0f} MiB"
    if estimate > budget:
        return CachePlan(
            setting, None, estimate, f"{distinct} images ({mib}) exceed {budget / 2**20:.0f} MiB"
        )
    return CachePlan(
        setting, DecodedImages(budget), estimate, f"{distinct} images at {height}x{width}: {mib}"
    )
