"""The open-set re-entry benchmark: people seen first in one camera and later in another, shuffled
with people seen only once, fed to an IdentityMemory as a tracker would feed it.

Each person of the test data seen by two cameras (or, without cameras, with two images or more)
is drawn, per seed, to return (half of them) or to be seen once. A returning person's sightings
are their images of one camera, then later those of the other (which first is drawn too); a
person seen once shows one camera's images. Every sighting is a new track: its images are its
frames, one feature each, and the memory decides it once it has them all (`confirm_after` =
the images of the smallest sighting). The arrival order is a random shuffle of all sightings in
which each return comes after its first sighting.

Outcomes, per seed:
- returns re-attached: a return given the identity its person's first sighting was given;
- returns merged: a return given the identity of someone else;
- new people attached: a first sighting given an existing identity (a false merge too);
- false merges: both kinds of merge, as a share of every sighting.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.splits import UNKNOWN_CAMERA
from .memory import IdentityMemory

OUTCOMES = ("reattached", "returns_merged", "new_attached", "false_merges")


@dataclass(frozen=True)
class Sighting:
    person: int
    camera: int
    rows: np.ndarray  # positions of its images in the features
    returning: bool  # the second sighting of a returning person


def people(pids: np.ndarray, camids: np.ndarray) -> dict[int, list[np.ndarray]]:
    """Each identity seen twice, as its two sightings' image positions."""
    found = {}
    for pid in np.unique(pids):
        mine = np.flatnonzero(pids == pid)
        cameras = [c for c in dict.fromkeys(camids[mine].tolist()) if c != UNKNOWN_CAMERA]
        if len(cameras) >= 2:
            found[int(pid)] = [mine[camids[mine] == cameras[0]], mine[camids[mine] == cameras[1]]]
        elif not cameras and len(mine) >= 2:
            found[int(pid)] = [mine[: len(mine) // 2], mine[len(mine) // 2 :]]
    return found


def arrivals(pids: np.ndarray, camids: np.ndarray, seed: int, returning_share: float = 0.5) -> list[Sighting]:
    """One seed's sightings in arrival order (module docstring)."""
    rng = np.random.default_rng(seed)
    seen = people(np.asarray(pids), np.asarray(camids))
    persons = sorted(seen)
    back = set(rng.choice(persons, size=round(returning_share * len(persons)), replace=False).tolist())
    events: list[list[Sighting]] = []
    for person in persons:
        order = rng.permutation(2)
        first, second = (seen[person][i] for i in order)
        if person in back:
            events.append(
                [Sighting(person, int(order[0]), first, False), Sighting(person, int(order[1]), second, True)]
            )
        else:
            events.append([Sighting(person, int(order[0]), first, False)])
    # a random order of all sightings, each person's in their own order: deal the positions
    flat = [(i, j) for i, person_events in enumerate(events) for j in range(len(person_events))]
    slots = rng.permutation(len(flat))
    placed = sorted(zip(slots, flat, strict=True))
    taken: dict[int, int] = {}
    ordered = []
    for _, (i, _) in placed:  # each person's sightings fill that person's slots in order
        j = taken.get(i, 0)
        taken[i] = j + 1
        ordered.append(events[i][j])
    return ordered


def replay(features: np.ndarray, order: Sequence[Sighting], threshold: float) -> dict[str, float]:
    """Feed `order` to a fresh memory at `threshold`; the outcome shares (module docstring)."""
    features = np.asarray(features, dtype=np.float32)
    frames = min(len(s.rows) for s in order)
    memory = IdentityMemory(features.shape[1], threshold, confirm_after=frames)
    given: dict[int, int] = {}  # person -> the identity of their first sighting
    owner: dict[int, int] = {}  # identity -> the person who opened it
    counts = dict.fromkeys(("returns", "firsts", *OUTCOMES), 0)
    clock = 0
    for track, sighting in enumerate(order):
        identity = None
        for row in sighting.rows[:frames]:
            clock += 1
            (identity,) = memory.observe(f"camera{sighting.camera}", clock, [track], features[row][None])
        opened = identity not in owner
        if opened:
            owner[identity] = sighting.person
        if sighting.returning:
            counts["returns"] += 1
            if identity == given[sighting.person]:
                counts["reattached"] += 1
            elif not opened:
                counts["returns_merged"] += 1
        else:
            counts["firsts"] += 1
            given[sighting.person] = identity
            if not opened:
                counts["new_attached"] += 1
    merges = counts["returns_merged"] + counts["new_attached"]
    return {
        "reattached": counts["reattached"] / max(counts["returns"], 1),
        "returns_merged": counts["returns_merged"] / max(counts["returns"], 1),
        "new_attached": counts["new_attached"] / max(counts["firsts"], 1),
        "false_merges": merges / len(order),
        "sightings": len(order),
        "returns": counts["returns"],
    }


def benchmark(
    features: np.ndarray, pids, camids, threshold: float, seeds: Sequence[int] = range(5)
) -> dict[str, tuple[float, float]]:
    """Each outcome's mean and standard deviation over the seeds of the arrival order."""
    runs = [
        replay(features, arrivals(np.asarray(pids), np.asarray(camids), seed), threshold) for seed in seeds
    ]
    return {
        name: (
            statistics.fmean(r[name] for r in runs),
            statistics.stdev(r[name] for r in runs) if len(runs) > 1 else 0.0,
        )
        for name in OUTCOMES
    }


def curve(
    features: np.ndarray, pids, camids, thresholds: Sequence[float], seed: int = 0
) -> dict[str, list[float]]:
    """The outcomes of one arrival order at each threshold (the plot's lines)."""
    order = arrivals(np.asarray(pids), np.asarray(camids), seed)
    found = [replay(features, order, t) for t in thresholds]
    return {
        "threshold": list(map(float, thresholds)),
        **{name: [r[name] for r in found] for name in OUTCOMES},
    }
