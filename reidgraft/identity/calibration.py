"""The identity memory's threshold, chosen on held-out identities for a target false-merge rate.

Each held-out person is seen twice, as a tracker would see them leave and come back: their
images from one camera are enrolled (pooled as the memory pools a bank: the L2-normalised mean),
their images from another camera are the returning track's query (pooled the same way). Without
camera ids, an identity's images are split in two halves by name order. Then:

- an impostor pair is a query against another person's enrolment: a false merge if the memory
  would attach it (similarity at or above the threshold);
- a genuine pair is a query against its own person's enrolment: a correct re-attachment.

The threshold is the lowest at which at most `target` of the impostor pairs merge. The rate is
per pair: a stranger compared with a memory of N people meets N impostors, so the chance that
some one of them merges grows with N (the re-entry benchmark measures it: `reentry.py`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.splits import UNKNOWN_CAMERA
from .memory import normalised

CALIBRATION_FILE = "identity-threshold.json"


@dataclass(frozen=True)
class Calibration:
    """A threshold and how it was chosen."""

    threshold: float
    target: float  # the false-merge rate asked for (per impostor pair)
    false_merge_rate: float  # what the threshold gives on the held-out pairs
    reattach_rate: float  # the share of held-out people whose return reaches the threshold
    identities: int
    impostor_pairs: int
    source: str = ""  # the data it was measured on, in words
    model: str = ""  # the digest of the model (FeatureExtractor.digest)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"threshold {self.threshold:.4f} (cosine) for a false-merge rate of {self.target:g} per pair: "
            f"{100 * self.false_merge_rate:.2f}% of {self.impostor_pairs} impostor pairs merge, "
            f"{100 * self.reattach_rate:.1f}% of {self.identities} returning people re-attach ({self.source})"
        )


def check_target(target: float) -> float:
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target < 1:
        raise ValueError(f"target {target!r}: give a false-merge rate between 0 and 1, e.g. 0.01 for 1%")
    return float(target)


def two_sightings(
    features: np.ndarray, pids: np.ndarray, camids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(enrolments, returns, pids): for every identity seen by two cameras (or, without camera
    ids, with two images or more), the pooled features of its first camera's images and of its
    second's (the two halves of its images by order)."""
    features = normalised(features)
    pids, camids = np.asarray(pids), np.asarray(camids)
    first, second, kept = [], [], []
    for pid in np.unique(pids):
        mine = np.flatnonzero(pids == pid)
        cameras = [c for c in dict.fromkeys(camids[mine].tolist()) if c != UNKNOWN_CAMERA]
        if len(cameras) >= 2:
            a, b = mine[camids[mine] == cameras[0]], mine[camids[mine] == cameras[1]]
        elif len(mine) >= 2 and not cameras:
            a, b = mine[: len(mine) // 2], mine[len(mine) // 2 :]
        else:
            continue
        first.append(features[a].mean(axis=0))
        second.append(features[b].mean(axis=0))
        kept.append(pid)
    if not kept:
        return (
            np.zeros((0, features.shape[1]), np.float32),
            np.zeros((0, features.shape[1]), np.float32),
            pids[:0],
        )
    return normalised(np.stack(first)), normalised(np.stack(second)), np.asarray(kept)


def calibrate_threshold(
    features: np.ndarray, pids, camids, target: float = 0.01, *, source: str = "", model: str = ""
) -> Calibration:
    """The lowest cosine threshold at which at most `target` of the held-out impostor pairs merge
    (module docstring). ValueError (one line) for a target outside (0, 1) or fewer than 2 people
    seen twice."""
    target = check_target(target)
    enrolled, returning, kept = two_sightings(features, pids, camids)
    if len(kept) < 2:
        raise ValueError(
            f"calibration needs at least 2 held-out people each seen twice (two cameras, or two images), "
            f"found {len(kept)}: hold out more identities (--val-ids) or pass a threshold yourself"
        )
    similarity = returning @ enrolled.T
    genuine = np.diag(similarity)
    impostors = np.sort(similarity[~np.eye(len(kept), dtype=bool)])[::-1]
    allowed = math.floor(target * len(impostors) + 1e-9)  # impostor pairs that may merge
    if allowed >= len(impostors):
        threshold = float(impostors[-1])
    else:  # just above the first impostor that must not merge
        threshold = float(np.nextafter(np.float32(impostors[allowed]), np.float32(np.inf)))
    return Calibration(
        threshold=threshold,
        target=target,
        false_merge_rate=float(np.mean(impostors >= threshold)),
        reattach_rate=float(np.mean(genuine >= threshold)),
        identities=len(kept),
        impostor_pairs=len(impostors),
        source=source,
        model=model,
    )


def validation_features(
    extractor, root: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The features, identities and cameras of the validation identities `extractor`'s run held
    out (the same ones as in training: `data/validation.py`), with a description. ValueError (one
    line) when the run held none out."""
    from ..data.validation import hold_out_identities

    run = extractor.run
    held = int(run.raw_config.get("val_ids") or 0)
    if not held:
        raise ValueError(
            f"{run.given} held out no validation identities (val_ids 0), and calibrating on the test set "
            "would make its scores look better than they are: retrain with --val-ids N (about 20% of the "
            "training identities), or pass a threshold yourself"
        )
    _, validation = hold_out_identities(run.splits(root), held)
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


def load_calibration(folder: str | Path, model: str | None = None) -> Calibration | None:
    """The calibration saved in `folder`, or None when there is none; ValueError (one line) when
    it was made for another model than `model`."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
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
