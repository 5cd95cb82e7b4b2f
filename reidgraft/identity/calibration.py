"""The identity memory's threshold, chosen on held-out identities for a target false-merge rate.

The held-out people are replayed through an IdentityMemory as the re-entry benchmark replays
the test people (`reentry.py`): half of them return in another camera, half are seen once, in
`orders` random arrival orders. A false merge is a sighting given an identity someone else
opened (a new person attached to a known one, or a return attached to the wrong one). The
threshold is the lowest at which the false merges, averaged over the orders, are at most
`target` of the sightings: found by bisection to within `TOLERANCE` (fewer merges as the
threshold rises).

What it measures is the rate in a memory of the held-out people's size. A memory that holds
more people meets more look-alikes: on CUHK01 a threshold calibrated for 1% on 97 held-out people
gave about 12% on 486 test people (docs/deployment.md). Calibrate on as many held-out people as
the memory will hold where you can, and check with the benchmark.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .reentry import arrivals, people, replay

CALIBRATION_FILE = "identity-threshold.json"
TOLERANCE = 1e-3  # of the threshold, where the bisection stops
CALIBRATION_SEED = 1000  # the arrival orders' seeds: 1000, 1001, ... (the benchmark's start at 0)


@dataclass(frozen=True)
class Calibration:
    """A threshold and how it was chosen."""

    threshold: float
    target: float  # the false merges asked for, as a share of the sightings
    false_merge_rate: float  # what the threshold gives on the held-out replays
    reattach_rate: float  # the share of held-out returns re-attached to their own identity
    identities: int  # held-out people seen twice (the replayed memory holds up to this many)
    orders: int
    source: str = ""  # the data it was measured on, in words
    model: str = ""  # the digest of the model (FeatureExtractor.digest)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"threshold {self.threshold:.4f} (cosine) for false merges of at most {self.target:g} of the "
            f"sightings: {100 * self.false_merge_rate:.2f}% merged and "
            f"{100 * self.reattach_rate:.1f}% of the returns re-attached, over {self.orders} arrival "
            f"orders of {self.identities} people ({self.source})"
        )


def check_target(target: float) -> float:
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target < 1:
        raise ValueError(f"target {target!r}: give a false-merge rate between 0 and 1, e.g. 0.01 for 1%")
    return float(target)


def calibrate_threshold(
    features: np.ndarray, pids, camids, target: float = 0.01, orders: int = 20, *, source: str = "",
    model: str = "",
) -> Calibration:  # fmt: skip
    """The lowest cosine threshold whose replays merge at most `target` of the sightings
    (module docstring). ValueError (one line) for a target outside (0, 1), fewer than 1 order or
    fewer than 4 people seen twice (2 returning, 2 seen once)."""
    target = check_target(target)
    if isinstance(orders, bool) or not isinstance(orders, int) or orders < 1:
        raise ValueError(f"orders {orders!r}: give 1 or more arrival orders to replay")
    pids, camids = np.asarray(pids), np.asarray(camids)
    seen = len(people(pids, camids))
    if seen < 4:
        raise ValueError(
            f"calibration needs at least 4 held-out people each seen twice (two cameras, or two images), "
            f"found {seen}: hold out more identities (--val-ids) or pass a threshold yourself"
        )
    replays = [arrivals(pids, camids, CALIBRATION_SEED + s) for s in range(orders)]

    def measured(threshold: float) -> tuple[float, float]:
        found = [replay(features, order, threshold) for order in replays]
        return (
            statistics.fmean(r["false_merges"] for r in found),
            statistics.fmean(r["reattached"] for r in found),
        )

    low, high = -1.0, 1.0
    if measured(high)[0] > target:  # features of different people alike to the last digit
        raise ValueError(
            f"no threshold keeps the false merges at {target:g}: even at a cosine of 1.0, "
            f"{100 * measured(high)[0]:.0f}% of the sightings merge, so this model's features do not tell "
            f"the held-out people apart (has it collapsed, or is it trained?)"
        )
    while high - low > TOLERANCE:
        middle = (low + high) / 2
        low, high = (low, middle) if measured(middle)[0] <= target else (middle, high)
    merged, reattached = measured(high)
    return Calibration(high, target, merged, reattached, seen, orders, source, model)


def validation_features(
    extractor, root: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The features, identities and cameras of the validation identities `extractor`'s run held
    out (the same ones as in training: `data/validation.py`), with a description. ValueError (one
    line) when the run held none out."""
    run = extractor.run
    split = run.held_out(root)
    if split is None:
        raise ValueError(
            f"{run.given} held out no validation identities (val_ids 0), and calibrating on the test set "
            "would make its scores look better than they are: retrain with --val-ids N (about 20% of the "
            "training identities), or pass a threshold yourself"
        )
    _, validation = split
    held = len({pid for _, pid, _ in validation.query})
    items = validation.query + validation.gallery
    features = extractor([path for path, _, _ in items])
    pids = np.array([pid for _, pid, _ in items])
    camids = np.array([camid for _, _, camid in items])
    return features, pids, camids, f"{held} validation identities of {run.raw_config['dataset']}"


def calibrate_run(extractor, target: float = 0.01, root: str | Path | None = None) -> Calibration:
    """The threshold for `extractor`'s features, calibrated on its run's validation identities."""
    check_target(target)
    features, pids, camids, source = validation_features(extractor, root)
    return calibrate_threshold(features, pids, camids, target, source=source, model=extractor.digest)


def save_calibration(calibration: Calibration, folder: str | Path) -> Path:
    from ..files import atomic_write_json

    path = Path(folder) / CALIBRATION_FILE
    atomic_write_json(path, calibration.to_dict())
    return path


def load_calibration(
    folder: str | Path, model: str | None = None, required: bool = True
) -> Calibration | None:
    """The calibration saved in `folder`. ValueError (one line) when it was made for another
    model than `model`, or when there is none and it is `required` (else None)."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        if required:
            raise ValueError(
                f"{folder} holds no {CALIBRATION_FILE}: run `reidgraft-identity calibrate {folder}` first "
                "(or pass a threshold yourself)"
            )
        return None
    try:
        calibration = Calibration(**json.loads(path.read_text()))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a reidgraft calibration ({error}); calibrate again") from None
    if model is not None and calibration.model and calibration.model != model:
        raise ValueError(
            f"{path} was calibrated for model {calibration.model[:12]}, not for {model[:12]}: calibrate "
            "this model (reidgraft-identity calibrate)"
        )
    return calibration
