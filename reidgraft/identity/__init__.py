"""Persistent identities for trackers: `IdentityMemory` re-attaches a returning person's new
track to who they were (memory.py), at a threshold calibrated on held-out identities for a
target false-merge rate (calibration.py), measured by an open-set re-entry benchmark
(reentry.py); `PersistentIds` feeds it a tracker's tracks: boxmot's, Roboflow's (supervision
Detections) or any tracker's boxes and ids (trackers.py). Names load on first use."""

from ..lazy import lazy_names

_EXPORTS = {
    "IdentityMemory": "memory",
    "Calibration": "calibration",
    "calibrate_threshold": "calibration",
    "calibrate_run": "calibration",
    "load_calibration": "calibration",
    "save_calibration": "calibration",
    "PersistentIds": "trackers",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
