"""The open-set re-entry benchmark: people seen first in one camera and later in another, shuffled
with people seen only once, fed to an IdentityMemory as a tracker would feed it.

Each person of the test data seen by two cameras (or, without cameras, with two images or more)
is drawn, per seed, to return (half of them) or to be seen once. A returning person's sightings
are their images of one camera, then later those of the other (which first is drawn too); a
person seen once shows one camera's images. Every sighting is a new track: its images are its
frames, one feature each, and the memory decides it after `confirm_after` of them, the images of
the smallest sighting (a sighting with more shows only that many). The arrival order is a
random shuffle of all sightings in which each return comes after its first sighting.

Outcomes, per seed:
- returns re-attached: a return given the identity its person's first sighting opened;
- returns merged: a return given an identity someone else opened (its own first sighting's,
  when that sighting was itself merged into someone else's, counts here);
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


def arrivals(
    pids: np.ndarray, camids: np.ndarray, seed: int, returning_share: float = 0.5, count: int | None = None
) -> list[Sighting]:
    """One seed's sightings in arrival order (module docstring), of `count` people drawn from
    those seen twice (default: all of them)."""
    rng = np.random.default_rng(seed)
    seen = people(np.asarray(pids), np.asarray(camids))
    persons = sorted(seen)
    if count is not None:
        if not 4 <= count <= len(persons):
            raise ValueError(f"people {count}: give 4 to {len(persons)} (the people seen twice here)")
        persons = sorted(rng.choice(persons, size=count, replace=False).tolist())
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
            if identity == given[sighting.person] and owner[identity] == sighting.person:
                counts["reattached"] += 1
            elif owner[identity] != sighting.person:
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
    features: np.ndarray, pids, camids, threshold: float, seeds: Sequence[int] = range(5),
    count: int | None = None,
) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Each outcome's mean and standard deviation over the seeds of the arrival order (each seed
    drawing `count` people, default all)."""
    pids, camids = np.asarray(pids), np.asarray(camids)
    runs = [replay(features, arrivals(pids, camids, seed, count=count), threshold) for seed in seeds]
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


# ---------------------------------------------------------------------- on a run's test people

NO_REID = "no re-ID"


def imagenet_only(extractor):
    """`extractor` with its model replaced by the same architecture from ImageNet weights alone
    (a fresh re-ID head: its batch-norm neck is the identity): the row "before re-ID training"."""
    import copy

    from ..models import resolve_weights
    from ..models.pretrained import load_pretrained
    from ..models.reid_head import build_reid_model, head_options

    run = extractor.run
    source = resolve_weights(run.arch, "imagenet", download=False).source
    if source is None:
        raise ValueError(f"{run.arch} has no ImageNet weights on this machine to compare with")
    model = build_reid_model(run.arch, run.num_classes, **head_options(run.raw_config))
    load_pretrained(model, source)
    other = copy.copy(extractor)
    other.model, other._digest, other.chosen_because = model.to(extractor.device).eval(), None, "ImageNet"
    return other


def test_people(extractor, root=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Features, identities and cameras of the run's test people: the identities with a query,
    all their query and gallery images (a gallery's distractors, who have no query, left out)."""
    splits = extractor.run.splits(root)
    asked = {pid for _, pid, _ in splits.query}
    items = [item for item in splits.query + splits.gallery if item[1] in asked]
    features = extractor([path for path, _, _ in items])
    pids = np.array([pid for _, pid, _ in items])
    camids = np.array([camid for _, _, camid in items])
    return features, pids, camids, f"{len(asked)} test identities of {splits.name}"


def reentry_rows(extractor, target: float, seeds: Sequence[int], root=None, log=print) -> dict:
    """The benchmark's rows on the run's test people: the trained model, the same backbone with
    ImageNet weights only (each at a threshold calibrated on the run's validation identities for
    false merges of `target`), and no re-ID; each with every test person, and with as many people
    as the calibration replayed (drawn per order: the rate the calibration promises). Plus each
    model's curve over thresholds (every test person, the first seed's arrival order)."""
    from .calibration import calibrate_run

    rows, curves = [], {}
    for name, model in (("trained", extractor), ("ImageNet only", imagenet_only(extractor))):
        features, pids, camids, described = test_people(model, root)
        calibration = calibrate_run(model, target, root)
        log(f"{name}: {calibration.line()}")
        everyone = len(people(pids, camids))
        for count in dict.fromkeys((everyone, min(calibration.identities, everyone))):
            outcomes = benchmark(features, pids, camids, calibration.threshold, seeds, count=count)
            rows.append({"model": name, "people": count, "calibration": calibration.to_dict(), **outcomes})
        curves[name] = curve(features, pids, camids, np.linspace(0, 1, 41), seed=seeds[0])
    rows.append({"model": NO_REID, "people": everyone, **{outcome: (0.0, 0.0) for outcome in OUTCOMES}})
    return {"people": described, "seeds": list(seeds), "target": target, "rows": rows, "curves": curves}


def write_reentry(result: dict, output) -> list:
    """reentry.md (the table), reentry.json (every number) and reentry.png (the curves) in `output`."""
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..files import atomic_write, atomic_write_text

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    seeds = len(result["seeds"])
    lines = [
        f"Open-set re-entry on {result['people']}: half of them return in the other camera, half are "
        f"seen once; mean ± standard deviation over {seeds} arrival orders, in %. Each model's threshold "
        f"is calibrated on the run's validation identities (replayed the same way) for false merges of "
        f"{result['target']:g} of the sightings (`identity/calibration.py`).",
        "",
        "| model | people per order | threshold | returns re-attached | returns merged with another "
        "| new people attached | false merges (all sightings) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        threshold = f"{row['calibration']['threshold']:.3f}" if "calibration" in row else "-"
        cells = [f"{100 * row[o][0]:.1f} ± {100 * row[o][1]:.1f}" for o in OUTCOMES]
        lines.append(f"| {row['model']} | {row['people']} | {threshold} | " + " | ".join(cells) + " |")
    paths = [output / "reentry.md", output / "reentry.json", output / "reentry.png"]
    atomic_write_text(paths[0], "\n".join(lines) + "\n")
    atomic_write_text(paths[1], json.dumps(result, indent=1))
    figure, axes = plt.subplots(figsize=(7, 4))
    for (name, found), colour in zip(result["curves"].items(), ("C0", "C1"), strict=False):
        axes.plot(
            found["threshold"], [100 * v for v in found["reattached"]], colour, label=f"{name}: re-attached"
        )
        axes.plot(found["threshold"], [100 * v for v in found["false_merges"]], colour, linestyle="--",
                  label=f"{name}: false merges")  # fmt: skip
    chosen = {row["model"]: row["calibration"]["threshold"] for row in result["rows"] if "calibration" in row}
    for threshold, colour in zip(chosen.values(), ("C0", "C1"), strict=False):
        axes.axvline(threshold, color=colour, linewidth=0.8, linestyle=":")
    axes.set_xlabel("threshold (cosine similarity)")
    axes.set_ylabel("% (one arrival order)")
    axes.legend(fontsize=7)
    atomic_write(paths[2], lambda file: figure.savefig(file, format="png", dpi=120, bbox_inches="tight"))
    plt.close(figure)
    return paths
