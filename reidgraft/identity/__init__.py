"""Persistent identities for trackers: `IdentityMemory` re-attaches a returning person's new
track to who they were (memory.py), at a threshold calibrated on held-out identities for a
target false-merge rate (calibration.py), measured by an open-set re-entry benchmark
(reentry.py); `PersistentIds` feeds it a tracker's tracks: boxmot's, Roboflow's (supervision
Detections) or any tracker's boxes and ids (trackers.py). Names load on first use."""

_EXPORTS = {
    "IdentityMemory": "reidgraft.identity.memory",
    "Calibration": "reidgraft.identity.calibration",
    "calibrate_threshold": "reidgraft.identity.calibration",
    "calibrate_run": "reidgraft.identity.calibration",
    "load_calibration": "reidgraft.identity.calibration",
    "save_calibration": "reidgraft.identity.calibration",
    "PersistentIds": "reidgraft.identity.trackers",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reidgraft.identity' has no attribute {name!r}")
