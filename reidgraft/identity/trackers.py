"""A tracker's tracks in, persistent identities out: `PersistentIds` cuts each track's crop from
the frame, embeds it with a FeatureExtractor and asks an IdentityMemory who it is.

    ids = PersistentIds(extractor, memory, stream="door")
    identities = ids.boxmot(frame, tracker.update(detections, frame))   # boxmot: (M, 8) rows
    identities = ids.supervision(frame, tracker.update(detections))     # Roboflow's trackers
    identities = ids.update(frame, boxes_xyxy, track_ids)               # any tracker

Each returns one identity per track row (-1 while a track is pending). Boxes are clipped to the
frame; an empty crop (a box outside the frame) or a box that is not finite is counted
(`empty_crops`), never an error: a track the memory knows keeps its identity (and no new track
of that frame may take it), a new one stays pending. Tracks without an id (supervision's -1: not yet
confirmed by the tracker) get -1 and are not shown to the memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .memory import IdentityMemory


class PersistentIds:
    """Persistent identities for the tracks of one stream (module docstring). `frame`: HWC uint8,
    BGR (OpenCV's) unless `bgr=False`. `when`: the frame's time; default, the frame's number."""

    def __init__(self, extractor, memory: IdentityMemory, stream: str = "camera", bgr: bool = True):
        if memory.dim != extractor.dim:
            raise ValueError(
                f"the memory holds {memory.dim}-value features and the extractor gives {extractor.dim}: "
                "they are another model's; start a memory for this one"
            )
        if memory.model and memory.model != extractor.digest:
            raise ValueError(
                f"the memory was built from model {memory.model[:12]}, the extractor is "
                f"{extractor.digest[:12]}: features of two models do not compare; start a memory for this one"
            )
        self.extractor, self.memory, self.stream, self.bgr = extractor, memory, str(stream), bgr
        self.frames = 0
        self.empty_crops = 0

    def update(self, frame: np.ndarray, boxes, track_ids, when: float | None = None) -> np.ndarray:
        """Boxes (N, 4: left, top, right, bottom, in pixels) and their track ids (N) of one frame."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be an HxWx3 uint8 image, got shape {frame.shape} {frame.dtype}")
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        track_ids = np.asarray(track_ids).reshape(-1)
        if len(track_ids) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes and {len(track_ids)} track ids: give one id per box")
        when = self.frames if when is None else when
        self.frames += 1
        height, width = frame.shape[:2]
        identities = np.full(len(boxes), -1, dtype=np.int64)
        crops, cropped, rows = [], [], []
        for row, ((left, top, right, bottom), track) in enumerate(zip(boxes, track_ids, strict=True)):
            if track < 0:
                continue
            rows.append(row)  # (shown to the memory even without a crop: its identity is in this frame)
            if not np.isfinite([left, top, right, bottom]).all():
                self.empty_crops += 1
                continue
            x0, y0 = max(int(np.floor(left)), 0), max(int(np.floor(top)), 0)
            x1, y1 = min(int(np.ceil(right)), width), min(int(np.ceil(bottom)), height)
            if x1 <= x0 or y1 <= y0:
                self.empty_crops += 1
                continue
            crops.append(frame[y0:y1, x0:x1])
            cropped.append(len(rows) - 1)
        if not rows:
            return identities
        # a row without a crop goes in as zeros: the memory skips its features, keeps its identity
        features = np.zeros((len(rows), self.memory.dim), np.float32)
        if crops:
            features[cropped] = self.extractor(crops, bgr=self.bgr)
        found = self.memory.observe(self.stream, when, [int(track_ids[r]) for r in rows], features)
        for row, identity in zip(rows, found, strict=True):
            identities[row] = -1 if identity is None else identity
        return identities

    def boxmot(self, frame: np.ndarray, tracks: np.ndarray, when: float | None = None) -> np.ndarray:
        """A boxmot tracker's `update` output: rows of left, top, right, bottom, track id, ..."""
        tracks = np.asarray(tracks, dtype=np.float64)
        if tracks.size and (tracks.ndim != 2 or tracks.shape[1] < 5):
            raise ValueError(
                f"boxmot's tracks are rows of at least 5 values (x1, y1, x2, y2, id), got {tracks.shape}"
            )
        tracks = tracks.reshape(-1, tracks.shape[1] if tracks.size else 5)
        return self.update(frame, tracks[:, :4], tracks[:, 4].astype(np.int64), when)

    def supervision(self, frame: np.ndarray, detections: Any, when: float | None = None) -> np.ndarray:
        """supervision `Detections` with `tracker_id` (what Roboflow's `trackers` return); the
        identities are also written to `detections.data["identity"]`."""
        if detections.tracker_id is None:
            raise ValueError("these Detections carry no tracker_id: pass them through a tracker first")
        identities = self.update(frame, detections.xyxy, detections.tracker_id, when)
        detections.data["identity"] = identities
        return identities
