"""IdentityMemory: persistent identities over a tracker's short-lived tracks.

A tracker keeps a person's appearance only while their track lives; when a person leaves the
frame, or walks into another camera, they come back under a new track id. The memory sits
between the tracker and a gallery of known people:

- every track, the first time it is seen, is *decided*: re-attached to the known identity it
  resembles most, if that resemblance reaches the threshold, or given a new identity;
- every later sighting of a decided track adds its features to that identity's bank.

How features are pooled (docs/deployment.md, "Identity memory"):
- a track's query is the L2-normalised mean of the features of its first `confirm_after`
  sightings (the track stays *pending*, identity None, until it has them);
- an identity's prototype is the L2-normalised mean of its bank: its last `bank_size` features,
  oldest dropped first, each kept sighting at most once per `enrol_every` time units of its
  track (consecutive frames are near duplicates);
- a query matches a prototype by the cosine similarity of the two (FAISS inner product on
  normalised vectors: `GalleryIndex(metric="cosine")`), and re-attaches when it reaches
  `threshold`. `calibration.py` chooses that threshold on held-out identities with the same
  pooling, for a target false-merge rate.

Two tracks seen in one frame of one stream are two people: a new track is never attached to an
identity another track shows in that frame, and two new tracks of one frame never share one.

Times (`when`) are the caller's unit (seconds, or frame numbers); streams are names (a camera).
The memory saves to one file in a folder (`save`/`load`, numpy arrays and JSON, no pickle;
written whole and renamed into place, so a stop mid-write leaves the saved memory as it was).
It is safe for one writer thread beside readers: every method takes the memory's lock.
"""

from __future__ import annotations

import json
import math
import numbers
import threading
import zipfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write

FORMAT = "reidgraft identity memory 1"
FILE = "identity-memory.npz"
UNREADABLE = (KeyError, ValueError, TypeError, IndexError)  # what a damaged header raises when read
CANDIDATES = 8  # identities a new track is compared with, beyond those it may not take


def normalised(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


@dataclass
class Identity:
    """One person the memory knows: their feature bank and where and when they were last seen."""

    number: int
    bank: deque  # of (dim,) float32 unit vectors, newest last, at most bank_size
    first_seen: float
    last_seen: float
    last_stream: str
    sightings: int = 0
    _prototype: np.ndarray | None = None  # (computed again after the bank changes)

    def prototype(self) -> np.ndarray:
        if self._prototype is None:
            self._prototype = normalised(np.mean(np.stack(self.bank), axis=0))
        return self._prototype

    def enrol(self, feature: np.ndarray) -> None:
        self.bank.append(feature)
        self._prototype = None


@dataclass
class Track:
    """One tracker track: pending (gathering its query) or bound to an identity."""

    stream: str
    track: int
    first_seen: float
    last_seen: float
    identity: int | None = None
    pending: list = field(default_factory=list)  # its first features, until it is decided
    last_enrolled: float = -math.inf


def _identity_entry(identity: Identity) -> dict[str, Any]:
    return {"number": identity.number, "features": len(identity.bank), "first_seen": identity.first_seen,
            "last_seen": identity.last_seen, "last_stream": identity.last_stream,
            "sightings": identity.sightings}  # fmt: skip


def _track_entry(track: Track) -> dict[str, Any]:
    enrolled = track.last_enrolled if math.isfinite(track.last_enrolled) else None  # (JSON has no -inf)
    return {"stream": track.stream, "track": track.track, "first_seen": track.first_seen,
            "last_seen": track.last_seen, "identity": track.identity, "last_enrolled": enrolled}  # fmt: skip


class IdentityMemory:
    """Persistent identities for a tracker's tracks (the module's docstring says how).

    `dim`: the features' size. `threshold`: the cosine similarity at which a new track re-attaches
    to a known identity (`calibration.calibrate_threshold` chooses it; None refuses to decide).
    `model`: the digest of the model whose features these are (`FeatureExtractor.digest`): a
    saved memory of another model is refused on load. `calibration`: what chose the threshold,
    saved with the memory."""

    def __init__(
        self,
        dim: int,
        threshold: float | None,
        *,
        model: str = "",
        bank_size: int = 16,
        confirm_after: int = 1,
        enrol_every: float = 0.0,
        calibration: dict[str, Any] | None = None,
    ):
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(f"dim must be a whole number of at least 1, got {dim!r}")
        if threshold is None:
            raise ValueError(
                "IdentityMemory needs a threshold and will not guess one: calibrate it on held-out "
                "identities (reidgraft.identity.calibrate_threshold, or `reidgraft-identity calibrate RUN`) "
                "or pass threshold= (a cosine similarity in [-1, 1])"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not -1 <= threshold <= 1:
            raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
        for name, value in (("bank_size", bank_size), ("confirm_after", confirm_after)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if isinstance(enrol_every, bool) or not isinstance(enrol_every, numbers.Real) or not enrol_every >= 0:
            raise ValueError(f"enrol_every must be a time of 0 or more, got {enrol_every!r}")
        self.dim, self.threshold, self.model = int(dim), float(threshold), model
        self.bank_size, self.confirm_after = int(bank_size), int(confirm_after)
        self.enrol_every = float(enrol_every)
        self.calibration = dict(calibration or {})
        self.identities: dict[int, Identity] = {}
        self.tracks: dict[tuple[str, int], Track] = {}
        self.next_number = 1
        self.skipped = 0  # observations without usable features (empty crops, NaN)
        self._lock = threading.RLock()
        self._index = None  # (GalleryIndex, identity numbers), rebuilt when a prototype changed

    def __repr__(self) -> str:
        return (
            f"IdentityMemory({len(self.identities)} identities, {len(self.tracks)} tracks, dim {self.dim}, "
            f"threshold {self.threshold:.4f})"
        )

    def __len__(self) -> int:
        return len(self.identities)

    # ------------------------------------------------------------------ observing

    def observe(
        self, stream: str, when: float, tracks: Sequence[int], features: np.ndarray
    ) -> list[int | None]:
        """One frame of `stream` at time `when`: the tracks it shows and one feature row each.
        Returns each track's identity (None while it is pending). A row that is not finite, or
        all zeros, is skipped and counted in `skipped` (its track keeps its identity)."""
        tracks = [int(track) for track in tracks]
        features = np.asarray(features, dtype=np.float32).reshape(len(tracks), -1) if tracks else None
        if features is not None and features.shape[1] != self.dim:
            raise ValueError(f"features have {features.shape[1]} values each, the memory holds {self.dim}")
        if len(set(tracks)) != len(tracks):
            raise ValueError(f"a frame lists track ids once each; {stream!r} at {when} repeats one")
        with self._lock:
            shown: dict[int, int] = {}  # identity -> the track showing it in this frame
            deciding: list[Track] = []
            for position, number in enumerate(tracks):
                key = (str(stream), number)
                track = self.tracks.get(key)
                if track is None:
                    track = self.tracks[key] = Track(str(stream), number, when, when)
                track.last_seen = max(track.last_seen, when)
                row = features[position]
                usable = bool(np.isfinite(row).all() and np.any(row))
                if not usable:
                    self.skipped += 1
                if track.identity is not None:
                    shown[track.identity] = number
                    if usable:
                        self._enrol(track, row, when)
                    self._seen(self.identities.get(track.identity), when, stream)
                elif usable:
                    track.pending.append(normalised(row))
                    if len(track.pending) >= self.confirm_after:
                        deciding.append(track)
            self._decide(deciding, set(shown), when, str(stream))
            return [self.tracks[(str(stream), number)].identity for number in tracks]

    def _decide(self, tracks: list[Track], taken: set[int], when: float, stream: str) -> None:
        """Bind each newly confirmed track: the best still-free identity at or above the
        threshold (the most similar pairs first), else a new identity."""
        if not tracks:
            return
        queries = normalised(np.stack([np.mean(track.pending, axis=0) for track in tracks]))
        # enough candidates per query that those shown in this frame cannot crowd out the rest
        found = self._lookup(queries, CANDIDATES + len(taken) + len(tracks))
        pairs = sorted(
            ((similarity, i, number) for i, row in enumerate(found) for number, similarity in row
             if similarity >= self.threshold),
            reverse=True,
        )  # fmt: skip
        bound: dict[int, int] = {}
        for _, i, number in pairs:
            if i not in bound and number not in taken:
                bound[i] = number
                taken.add(number)
        for i, track in enumerate(tracks):
            if i in bound:
                track.identity = bound[i]
            else:
                track.identity = self._new_identity(when, stream)
            for row in track.pending:  # (its first features, all of them, whatever enrol_every)
                self.identities[track.identity].enrol(row)
            track.last_enrolled, track.pending = when, []
            self._index = None
            self._seen(self.identities[track.identity], when, stream)

    def _new_identity(self, when: float, stream: str) -> int:
        number, self.next_number = self.next_number, self.next_number + 1
        self.identities[number] = Identity(number, deque(maxlen=self.bank_size), when, when, stream)
        return number

    def _enrol(self, track: Track, row: np.ndarray, when: float) -> None:
        identity = self.identities.get(track.identity)
        if identity is None:  # (forget() drops an identity's tracks with it)
            return
        if identity.bank and when - track.last_enrolled < self.enrol_every:
            return
        identity.enrol(normalised(row))
        track.last_enrolled = when
        self._index = None

    @staticmethod
    def _seen(identity: Identity | None, when: float, stream: str) -> None:
        if identity is not None:
            identity.sightings += 1
            if when >= identity.last_seen:
                identity.last_seen, identity.last_stream = when, stream

    def _prototypes(self) -> tuple[list[int], np.ndarray]:
        numbers = [number for number, identity in self.identities.items() if identity.bank]
        if not numbers:
            return [], np.zeros((0, self.dim), np.float32)
        return numbers, np.stack([self.identities[number].prototype() for number in numbers])

    # ------------------------------------------------------------------ asking

    def search(self, features: np.ndarray, k: int = 5) -> list[list[tuple[int, float]]]:
        """The `k` known identities most similar to each feature row (its prototype's cosine
        similarity), best first: a lookup that changes nothing."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim not in (1, 2) or features.shape[-1] != self.dim:
            raise ValueError(f"features of shape {features.shape}: give rows of {self.dim} values")
        queries = normalised(features.reshape(-1, self.dim))
        with self._lock:
            return self._lookup(queries, k)

    def _lookup(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        from ..index import GalleryIndex

        if self._index is None:
            numbers, prototypes = self._prototypes()
            self._index = (GalleryIndex(prototypes, "cosine", gpu=False) if numbers else None, numbers)
        index, numbers = self._index
        if index is None:
            return [[] for _ in queries]
        distances, positions = index.search(queries, min(k, len(numbers)))
        # (GalleryIndex's cosine distance is 1 - similarity)
        return [
            [(numbers[p], float(1 - d)) for d, p in zip(row_d, row_p, strict=True) if p >= 0]
            for row_d, row_p in zip(distances, positions, strict=True)
        ]

    def identity_of(self, stream: str, track: int) -> int | None:
        with self._lock:
            found = self.tracks.get((str(stream), int(track)))
            return None if found is None else found.identity

    def last_seen(self, number: int) -> tuple[float, str]:
        """When and in which stream identity `number` was last seen."""
        with self._lock:
            identity = self.identities[number]
            return identity.last_seen, identity.last_stream

    # ------------------------------------------------------------------ forgetting

    def forget(self, before: float) -> int:
        """Forget every identity last seen before `before`, and every track last seen before it;
        returns how many identities were forgotten."""
        with self._lock:
            old = [number for number, identity in self.identities.items() if identity.last_seen < before]
            for number in old:
                del self.identities[number]
            self.tracks = {
                key: track
                for key, track in self.tracks.items()
                if track.last_seen >= before and track.identity not in old
            }
            self._index = None
            return len(old)

    def end_stream(self, stream: str) -> None:
        """Drop the track bindings of `stream` (its tracker restarted: its track ids begin anew);
        its identities stay known."""
        with self._lock:
            self.tracks = {key: track for key, track in self.tracks.items() if key[0] != str(stream)}

    # ------------------------------------------------------------------ saving

    def save(self, folder: str | Path) -> Path:
        """Write the memory to `folder`/identity-memory.npz (one file, renamed into place)."""
        with self._lock:
            numbers = sorted(self.identities)
            rows = [row for n in numbers for row in self.identities[n].bank]
            banks = np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
            header = {
                "format": FORMAT, "dim": self.dim, "threshold": self.threshold, "model": self.model,
                "bank_size": self.bank_size, "confirm_after": self.confirm_after,
                "enrol_every": self.enrol_every, "calibration": self.calibration,
                "next_number": self.next_number, "skipped": self.skipped,
                "identities": [_identity_entry(self.identities[n]) for n in numbers],
                "tracks": [_track_entry(t) for t in self.tracks.values() if t.identity is not None],
            }  # fmt: skip
            text = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        path = Path(folder) / FILE
        atomic_write(path, lambda file: np.savez(file, header=text, banks=banks.astype(np.float32)))
        return path

    @classmethod
    def load(cls, folder: str | Path, *, dim: int | None = None, model: str | None = None) -> IdentityMemory:
        """The memory `save` wrote in `folder`. ValueError (one line) for a missing or damaged
        file, or when `dim` or `model` (the features and model it will be fed) differ from the
        saved memory's."""
        path = Path(folder) / FILE
        if not path.is_file():
            raise ValueError(f"{folder}: no {FILE} here; save a memory there first (IdentityMemory.save)")
        try:
            with np.load(path, allow_pickle=False) as stored:
                header = json.loads(bytes(stored["header"]).decode())
                banks = np.asarray(stored["banks"], dtype=np.float32)
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}")
            saved_dim, saved_model = header["dim"], header["model"]
        except (
            OSError,
            KeyError,
            ValueError,
            TypeError,
            EOFError,
            AttributeError,
            zipfile.BadZipFile,
        ) as error:
            raise ValueError(
                f"{path} is not a reidgraft identity memory ({error}); was it damaged?"
            ) from None
        if dim is not None and saved_dim != dim:
            raise ValueError(
                f"{path} holds {saved_dim}-value features and this model gives {dim}: it is another "
                "model's memory; start a new one (or load it with the model that made it)"
            )
        if model is not None and saved_model and saved_model != model:
            raise ValueError(
                f"{path} was built from model {saved_model[:12]} and these features come from "
                f"{model[:12]}: features of two models do not compare; start a new memory for this model"
            )
        try:
            return cls._from_saved(header, banks)
        except (KeyError, ValueError, TypeError, IndexError) as error:
            raise ValueError(
                f"{path} is not a reidgraft identity memory ({error}); was it damaged?"
            ) from None

    @classmethod
    def _from_saved(cls, header: dict[str, Any], banks: np.ndarray) -> IdentityMemory:
        memory = cls(
            header["dim"], header["threshold"], model=header["model"], bank_size=header["bank_size"],
            confirm_after=header["confirm_after"], enrol_every=header["enrol_every"],
            calibration=header["calibration"],
        )  # fmt: skip
        memory.next_number, memory.skipped = header["next_number"], header["skipped"]
        if banks.ndim != 2 or banks.shape[1] != memory.dim:
            raise ValueError(f"its banks have shape {banks.shape}, not (n, {memory.dim})")
        start = 0
        for entry in header["identities"]:
            rows = banks[start : start + entry["features"]]
            start += entry["features"]
            if len(rows) != entry["features"] or not rows.size:
                raise ValueError(
                    f"identity {entry['number']} has {len(rows)} saved features of {entry['features']}"
                )
            memory.identities[entry["number"]] = Identity(
                entry["number"], deque(list(rows), maxlen=memory.bank_size), entry["first_seen"],
                entry["last_seen"], entry["last_stream"], entry["sightings"],
            )  # fmt: skip
        for entry in header["tracks"]:
            enrolled = entry["last_enrolled"]
            memory.tracks[(entry["stream"], entry["track"])] = Track(
                entry["stream"], entry["track"], entry["first_seen"], entry["last_seen"], entry["identity"],
                last_enrolled=-math.inf if enrolled is None else enrolled,
            )  # fmt: skip
        return memory
