"""`TrainedRun`: the one reader of a finished (or running) run, for everything that uses a
trained model: `FeatureExtractor`, export, evaluate, compare, the demo and grafting+ teachers.

It reads the run's checkpoint (weights only; a distributed run's ranks merged into one run of
K models) and its metrics.json, and answers: what the run is (`config`, `task`), which model it
recommends, model k built and placed on a device, the precision to run it in so that its
features are evaluation's, and what it recorded about its data. It imports no training code.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig, build_config
from ..models import backbone_spec
from ..models.reid_head import build_reid_model, head_options
from .run_dir import RunDir, load_checkpoint

REID = "reid"


def teacher_model(spec: str) -> tuple[str, int]:
    """(path, k) of a teacher spec: "PATH" (model 0) or "PATH:k"."""
    path, separator, index = spec.rpartition(":")
    return (path, int(index)) if separator and index.isdigit() else (spec, 0)


class TrainedRun:
    """A run folder (or one checkpoint file in it), read once."""

    def __init__(self, path: str | Path):
        self.given = Path(path)
        self.folder = RunDir(path)
        self.path = self.folder.path
        self._payload = load_checkpoint(self.given)  # ValueError naming the file when there is none

    def __repr__(self) -> str:
        return f"TrainedRun({str(self.given)!r}: {self.count} x {self.arch}, {self.task}, epoch {self.epoch})"

    # ------------------------------------------------------------------ what the run is

    @property
    def raw_config(self) -> dict[str, Any]:
        """The config as the run saved it (older runs lack the fields added since)."""
        return self._payload["config"]

    @cached_property
    def config(self) -> TrainConfig:
        """The run's config, completed with today's defaults for the fields it predates, checked."""
        return build_config(self.raw_config)

    @property
    def task(self) -> str:
        return self._payload.get("task", REID)

    @property
    def arch(self) -> str:
        return self.raw_config["arch"]

    @property
    def count(self) -> int:
        """How many models the run holds (K)."""
        return len(self._payload["models"])

    @property
    def num_classes(self) -> int:
        return int(self._payload["num_classes"])

    @property
    def epoch(self) -> int:
        return int(self._payload["epoch"])

    @property
    def data(self) -> dict[str, Any] | None:
        """What the run recorded about its data (`ReidSplits.fingerprint`), or None (older runs)."""
        return self._payload.get("data")

    @cached_property
    def metrics(self) -> dict[str, Any] | None:
        """metrics.json, or None when it is missing or unreadable."""
        return self.folder.read_metrics()

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.raw_config["height"]), int(self.raw_config["width"])

    def require_reid(self, what: str) -> None:
        """ValueError (one line) unless this is a re-ID run; `what` says what needs one."""
        if self.task != REID:
            raise ValueError(f"{self.given} is a {self.task} run; {what}")

    def check_model(self, k: int, flag: str = "model") -> int:
        if not 0 <= k < self.count:
            raise ValueError(f"{flag} {k}: the run {self.given} has models 0..{self.count - 1}")
        return k

    def recommended_model(self) -> tuple[int, str]:
        """The model the run recommends, and why: the best of K chosen on validation, or model 0
        (the one declared before training) when the run held no validation set. Never a choice
        made on the test set."""
        if self.metrics is None and self.folder.metrics.exists():
            return 0, f"model 0: {self.folder.metrics} cannot be read, so its best of K is unknown"
        best = ((self.metrics or {}).get("report") or {}).get("best_of_k") or {}
        if best.get("chosen_on") == "validation" and 0 <= int(best.get("model", -1)) < self.count:
            return int(best["model"]), "the best of K on validation"
        return 0, "model 0"

    # ------------------------------------------------------------------ its models

    def state(self, k: int) -> dict[str, torch.Tensor]:
        """Model k's weights (on the CPU, as saved)."""
        return self._payload["models"][self.check_model(k)]

    def _ema_copies(self, name: str = "ema") -> list:
        return ((self._payload.get("participants") or {}).get(name) or {}).get("copies") or []

    @property
    def has_ema(self) -> bool:
        """Whether the run kept an EMA copy of each model (`--ema`)."""
        return len(self._ema_copies()) == self.count

    def ema_names(self) -> list[str]:
        """The EMA copies the run kept, by name: "ema" (--ema's decay), then ema_<decay> for each
        --ema-grid decay."""
        participants = self._payload.get("participants") or {}
        return [
            name
            for name in participants
            if (name == "ema" or name.startswith("ema_")) and self._ema_copies(name)
        ]

    def ema_state(self, k: int, name: str = "ema") -> dict[str, torch.Tensor]:
        """Model k's EMA copy `name` (on the CPU, as saved); ValueError when the run kept none."""
        if len(self._ema_copies(name)) != self.count:
            what = "EMA copies (train with --ema DECAY)" if name == "ema" else f"{name} copies (--ema-grid)"
            raise ValueError(f"{self.given} kept no {what}")
        return self._ema_copies(name)[self.check_model(k)]

    def model(
        self,
        k: int,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        *,
        ema: bool | str = False,
    ) -> nn.Module:
        """Model k built as it trained (backbone, neck, last stride), in eval mode on `device`, in
        channels_last memory format when asked (as the trainer keeps it); its EMA copy with `ema`
        (True: --ema's, or a copy's name from `ema_names`; batch-norm statistics as last evaluated)."""
        model = build_reid_model(self.arch, self.num_classes, **head_options(self.raw_config))
        try:
            model.load_state_dict(self.ema_state(k, "ema" if ema is True else ema) if ema else self.state(k))
        except RuntimeError as error:  # missing, unexpected or misshapen weights
            detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
            raise ValueError(
                f"{self.given}: model {k}'s weights do not fit a {self.arch} with {self.num_classes} "
                f"classes ({detail[:160]}); the checkpoint was edited or damaged"
            ) from None
        layout = torch.channels_last if channels_last else torch.preserve_format
        return model.to(torch.device(device), memory_format=layout).eval()

    def models(self, device: torch.device | str = "cpu", channels_last: bool = False) -> list[nn.Module]:
        return [self.model(k, device, channels_last) for k in range(self.count)]

    def precision(self, amp: str, device: torch.device) -> tuple[str, bool]:
        """(amp, channels_last) to run the models in. `auto`: as the run was evaluated while it
        trained (the precision and memory format its metrics.json records), so the numbers
        agree; the measured default for this device when the run recorded none it can use (fp16
        from a GPU, on a CPU). Runs from before precision was recorded trained and evaluated in
        fp32, NCHW. ValueError (one line) for a precision this hardware lacks."""
        spec, size = backbone_spec(self.arch), self.input_size
        recorded = (
            self.metrics.get("precision", {"amp": "none", "channels_last": False}) if self.metrics else None
        )
        if amp == "auto" and recorded:
            try:
                return spec.precision(recorded["amp"], recorded["channels_last"], device, size)
            except ValueError:
                pass
        return spec.precision(amp, None, device, size)

    # ------------------------------------------------------------------ its data

    def splits(self, root: str | Path | None = None):
        """The re-ID splits the run was trained and evaluated on, read from `root` (default: the
        run's); ValueError (one line) when the data there differs from what the run recorded."""
        from ..data import load_run_splits

        config = self.raw_config
        return load_run_splits(config["dataset"], root or config["root"], self.data, str(self.given), config)

    def held_out(self, root: str | Path | None = None):
        """(training splits, validation splits) as the run held its validation identities out
        (`data/validation.py`: the same ones in every run with that count), or None when it held
        none out."""
        from ..data.validation import hold_out_identities

        held = int(self.raw_config.get("val_ids") or 0)
        return hold_out_identities(self.splits(root), held) if held else None


class WeightsFile(TrainedRun):
    """One model's plain weights (a state dict: `export --format weights`, or a torchreid model
    file, `{"state_dict": ...}` with or without `module.` prefixes) read as a run of one model,
    so that `FeatureExtractor` takes it as torchreid's extractor takes a model file. The
    architecture and input size come from the export's FILE.json beside it, else from `arch`,
    `height` and `width`; the number of classes and a BNNeck from the weights themselves."""

    def __init__(self, path: str | Path, arch: str | None = None, height: int | None = None,
                 width: int | None = None):  # fmt: skip
        self.given = self.path = Path(path)
        self.folder = RunDir(path)
        contract = weights_contract(self.given)
        arch = arch or contract.get("arch")
        if not arch:
            raise ValueError(
                f"{self.given} holds weights alone and no {self.given.name}.json says its architecture: "
                "pass arch= (and height=, width=, the input size it was trained at)"
            )
        size = contract.get("input", {})
        height, width = height or size.get("height"), width or size.get("width")
        if not (isinstance(height, int) and isinstance(width, int)):
            raise ValueError(f"{self.given}: pass height= and width=, the input size {arch} was trained at")
        state = _plain_state(self.given)
        head = contract.get("head") or {"bnneck": "classifier.neck.weight" in state, "last_stride": 2}
        classifier = state.get("classifier.linear.weight", state.get("classifier.weight"))
        if classifier is None:
            raise ValueError(f"{self.given} holds no classifier weights; is it a re-ID model's state dict?")
        config = {"arch": arch, "height": height, "width": width, **head,
                  "metric": contract.get("evaluation_metric", "euclidean")}  # fmt: skip
        self._payload = {"config": config, "models": [state], "num_classes": int(classifier.shape[0]),
                         "epoch": 0, "task": REID}  # fmt: skip

    def __repr__(self) -> str:
        return f"WeightsFile({str(self.given)!r}: {self.arch} {self.input_size[0]}x{self.input_size[1]})"

    @property
    def metrics(self) -> None:
        return None  # (a metrics.json beside the file is some run's, not this file's)

    def recommended_model(self) -> tuple[int, str]:
        return 0, "the file's one model"


def weights_contract(path: Path) -> dict[str, Any]:
    """The contract `export --format weights` wrote beside `path` (FILE.json), or {}."""
    import json

    beside = path.with_name(path.name + ".json")
    try:
        contract = json.loads(beside.read_text())
    except (OSError, ValueError):
        return {}
    return contract if isinstance(contract, dict) and contract.get("format") == "weights" else {}


def _numpy_scalars() -> list:
    """What torchreid's own checkpoints hold beside the weights (`rank1`, a numpy float32): numpy
    scalars and dtypes, data only, allowed to the safe loader."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # (numpy 2 renamed it)
    return [core.multiarray.scalar, np.dtype] + [type(np.dtype(kind)) for kind in ("f4", "f8", "i4", "i8")]


def _plain_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        with torch.serialization.safe_globals(_numpy_scalars()):
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path} not found") from None
    except Exception as error:  # (pickles of code are refused by weights_only, and named)
        raise ValueError(
            f"{path} is not a weights file torch can read safely ({type(error).__name__})"
        ) from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict (names to tensors)")
    return {key.removeprefix("module."): value for key, value in state.items()}
