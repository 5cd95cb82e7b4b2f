"""K models trained in lockstep and grafted at every epoch end (GRAFTING.md, Algorithm 1), for
re-ID or classification (the task supplies data, teacher logits and evaluation: `tasks.py`).

Each step every model takes a batch from its OWN loader and steps with its OWN optimizer and
learning rate; at each epoch end the ring grafts them. K = 1 is the baseline through the same
code; `graft=False` trains the K models independently at the same per-model learning rates.
With teachers (grafting+), each student's loss adds the distillation term.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm import tqdm

from ..analysis import filter_norms, invalid_ratios, network_entropy
from ..config import TrainConfig
from ..data import ReidSplits
from ..data.classification import ClassificationData
from ..data.loaders import set_epoch
from ..grafting import GraftRing, distillation_loss, ring_learning_rates
from ..models import build_backbone
from .checkpoint import (
    CHECKPOINT_NAME,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from .tasks import REID_METRICS, make_task

METRIC_KEYS = REID_METRICS
PREVIOUS_CHECKPOINT = "checkpoint-previous.pt"
# Per-model entries of an epoch record: each rank has its own, rank 0 writes them all.
PER_MODEL_KEYS = ("loss", "train_accuracy", "lr", "alphas", "invalid_ratio_1e-3", "network_entropy")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def make_deterministic() -> None:
    """Deterministic kernels (same run, same numbers), at some cost in speed."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def build_optimizer(config: TrainConfig, params, lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=False
        )
    amsgrad = config.optimizer == "amsgrad"
    return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay, amsgrad=amsgrad)


def build_scheduler(config: TrainConfig, optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch. `cosine` spans the epochs the run was started with."""
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "constant":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=1.0)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)


@dataclass
class Member:
    """One model of the ring with what steps it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    initial_lr: float


class Trainer:
    """Trains `config.models` models on `data` (re-ID splits or a classification dataset),
    writing everything into `run_dir`."""

    def __init__(
        self,
        config: TrainConfig,
        data: ReidSplits | ClassificationData,
        run_dir: Path,
        *,
        log=print,
        rank: int | None = None,
    ):
        """`rank` (with torch.distributed initialised, world size = config.models): this process
        trains model `rank` alone and grafts over the process group; None trains all K here."""
        self.config, self.run_dir, self.log = config, Path(run_dir), log
        self.rank = rank
        if rank is not None and not 0 <= rank < config.models:
            raise ValueError(f"rank {rank} outside the ring of {config.models} models")
        self.model_ids = [rank] if rank is not None else list(range(config.models))
        self.task = make_task(config, data)
        if config.deterministic:
            make_deterministic()
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.num_classes = self.task.num_classes
        self.members = self._build_members()
        self.ring = None
        if config.graft and config.models > 1 and rank is None:
            self.ring = GraftRing([m.model for m in self.members], **config.graft_options())
        self.teachers = [self._load_teacher(spec) for spec in config.teacher]
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smooth)
        self.train_loaders = self.task.train_loaders(self.model_ids)
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []
        self.final: list[dict[str, Any]] | None = None
        self._writer = None

    # ------------------------------------------------------------------ building

    def _build_members(self) -> list[Member]:
        config = self.config
        rates = ring_learning_rates(config.lr, config.models) if config.diverse_lr else None
        members = []
        for k in self.model_ids:
            model = build_backbone(config.arch, self.num_classes, seed=config.seed + k)
            if config.weights:
                from ..models.pretrained import load_pretrained

                load_pretrained(model, config.weights)
            model.to(self.device)
            lr = rates[k] if rates else config.lr
            optimizer = build_optimizer(config, model.parameters(), lr)
            members.append(Member(model, optimizer, build_scheduler(config, optimizer), lr))
        return members

    def _load_teacher(self, spec: str) -> nn.Module:
        """A frozen model from a reidgraft checkpoint: "PATH" (model 0) or "PATH:k"."""
        path, separator, index = spec.rpartition(":")
        path, k = (path, int(index)) if separator and index.isdigit() else (spec, 0)
        payload = load_checkpoint(Path(path))
        teacher_config = payload["config"]
        if not 0 <= k < len(payload["models"]):
            raise ValueError(f"teacher {spec}: the run has {len(payload['models'])} models, no model {k}")
        if payload["num_classes"] != self.num_classes or teacher_config["dataset"] != self.config.dataset:
            raise ValueError(
                f"teacher {spec} was trained on {teacher_config['dataset']} with {payload['num_classes']} "
                f"identities; this run has {self.config.dataset} with {self.num_classes}"
            )
        teacher = build_backbone(teacher_config["arch"], self.num_classes)
        teacher.load_state_dict(payload["models"][k])
        teacher.to(self.device).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        return teacher

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "task": self.task.kind,
            "model_ids": self.model_ids,
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "epoch": self.epoch,
            "models": [m.model.state_dict() for m in self.members],
            "optimizers": [m.optimizer.state_dict() for m in self.members],
            "schedulers": [m.scheduler.state_dict() for m in self.members],
            "rng": rng_state(),
            "history": self.history,
        }

    def load_state(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint of the same run (checked by the caller)."""
        for member, model, optimizer, scheduler in zip(
            self.members, payload["models"], payload["optimizers"], payload["schedulers"], strict=True
        ):
            member.model.load_state_dict(model)
            member.optimizer.load_state_dict(optimizer)
            member.scheduler.load_state_dict(scheduler)
        self.epoch = payload["epoch"]
        self.history = list(payload["history"])
        restore_rng_state(payload["rng"])

    def write_run_files(self) -> None:
        atomic_write_text(
            self.run_dir / "config.yaml", yaml.safe_dump(self.config.to_dict(), sort_keys=False)
        )

    def checkpoint_path(self) -> Path:
        """Where this process keeps its checkpoint: the run folder, or `rank<k>/` of it."""
        folder = self.run_dir if self.rank is None else self.run_dir / f"rank{self.rank}"
        return folder / CHECKPOINT_NAME

    def _save(self) -> None:
        path = self.checkpoint_path()
        if self.rank is not None and path.exists():
            # A rank may finish an epoch its peers never save; keep the one before for resume.
            os.replace(path, path.with_name(PREVIOUS_CHECKPOINT))
        save_checkpoint(path, self.state())
        if self.rank in (None, 0):
            atomic_write_json(self.run_dir / "metrics.json", self.metrics_file())

    def metrics_file(self) -> dict[str, Any]:
        """metrics.json: every epoch's record, the last epoch's metrics ("final"), and each model's
        best evaluated epoch ("best", chosen on the test data, as the papers report)."""
        return {"task": self.task.kind, "epochs": self.history, "final": self.final, "best": self.best()}

    def best(self) -> list[dict[str, Any]] | None:
        primary = self.task.primary
        evaluated = [record for record in self.history if record.get("metrics")]
        if not evaluated:
            return None
        best = []
        for k in range(len(self.members)):
            record = max(evaluated, key=lambda r: (r["metrics"][k][primary], -r["epoch"]))
            best.append({**record["metrics"][k], "epoch": record["epoch"], "chosen_on": "test set"})
        return best

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    # ------------------------------------------------------------------ training

    def fit(self) -> list[dict[str, Any]]:
        """Train up to `config.epochs`, evaluating as configured; return the final metrics."""
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.write_run_files()
        try:
            while self.epoch < config.epochs:
                started = time.perf_counter()
                record = {"epoch": self.epoch + 1, **self.train_epoch(self.epoch)}
                record["lr"] = [m.optimizer.param_groups[0]["lr"] for m in self.members]
                for member in self.members:
                    member.scheduler.step()
                record["alphas"] = self._graft(record)
                record.update(self.filter_health())
                self.epoch += 1
                last = self.epoch == config.epochs
                if last or (config.eval_every and self.epoch % config.eval_every == 0):
                    record["metrics"] = self.evaluate()
                    if last:
                        self.final = record["metrics"]
                record["seconds"] = round(time.perf_counter() - started, 3)
                record = self._gathered(record)
                self.history.append(record)
                if self.rank in (None, 0):
                    self._log_epoch(record)
                self._save()
        finally:
            if self._writer is not None:
                self._writer.close()
        if self.final is None:  # resumed a run that had already reached its epochs
            self.final = self.evaluate()
            if self.rank in (None, 0):
                atomic_write_json(self.run_dir / "metrics.json", self.metrics_file())
        return self.final

    def train_epoch(self, epoch: int, max_steps: int | None = None) -> dict[str, Any]:
        """One epoch of K models in lockstep (or its first `max_steps` steps, for benchmarks);
        returns mean loss and training accuracy per model."""
        set_epoch(self.train_loaders, epoch)
        for member in self.members:
            member.model.train()
        count = len(self.members)
        loss_sums, correct, seen = [0.0] * count, [0] * count, [0] * count
        steps = min(len(self.train_loaders[0]), max_steps or len(self.train_loaders[0]))
        bar = tqdm(
            itertools.islice(zip(*self.train_loaders, strict=True), steps),
            total=steps,
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            leave=False,
            disable=None,
        )
        for batches in bar:
            for k, (member, (images, pids, *_)) in enumerate(zip(self.members, batches, strict=True)):
                images = images.to(self.device, non_blocking=True)
                pids = pids.to(self.device, non_blocking=True)
                logits = member.model(images)
                loss = self.criterion(logits, pids)
                if self.teachers:
                    with torch.no_grad():
                        teacher_logits = [self.task.teacher_logits(t, images) for t in self.teachers]
                    loss = loss + self.config.kd_weight * distillation_loss(
                        logits, teacher_logits, self.config.kd_tau
                    )
                member.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                member.optimizer.step()
                loss_sums[k] += loss.item() * len(pids)
                correct[k] += int((logits.argmax(dim=1) == pids).sum())
                seen[k] += len(pids)
        return {
            "loss": [s / max(n, 1) for s, n in zip(loss_sums, seen, strict=True)],
            "train_accuracy": [c / max(n, 1) for c, n in zip(correct, seen, strict=True)],
        }

    # ------------------------------------------------------------------ evaluation

    def _graft(self, record: dict[str, Any]) -> list[dict[str, float]] | None:
        """The epoch-end ring graft: in process, or this rank's part of it over the process group."""
        if self.rank is None:
            return self.ring.graft() if self.ring else None
        if not self.config.graft or self.config.models == 1:
            return None
        from ..grafting import distributed_graft

        alphas, stats = distributed_graft(
            self.members[0].model, timeout_s=self.config.ring_timeout, **self.config.graft_options()
        )
        record["ring_exchange"] = {"bytes": stats.bytes_sent, "seconds": round(stats.seconds, 3)}
        return [alphas]

    def _gathered(self, record: dict[str, Any]) -> dict[str, Any]:
        """In a distributed run, every rank's record merged in model order (all ranks get it)."""
        if self.rank is None:
            return record
        import torch.distributed as dist

        parts: list[dict[str, Any]] = [{} for _ in range(self.config.models)]
        dist.all_gather_object(parts, record)
        merged = dict(record)
        for key in PER_MODEL_KEYS:
            values = [part.get(key) for part in parts]
            merged[key] = None if all(v is None for v in values) else [x for v in values for x in v]
        merged["seconds"] = max(part["seconds"] for part in parts)
        if "ring_exchange" in record:
            merged["ring_exchange"] = {
                "bytes": sum(part["ring_exchange"]["bytes"] for part in parts),
                "seconds": max(part["ring_exchange"]["seconds"] for part in parts),
            }
        return merged

    def filter_health(self) -> dict[str, list[float]]:
        """Per model, after this epoch's graft: the fraction of filters whose L1 norm is under 1e-3
        and the network's entropy (sum of layer entropies), the papers' Fig. 6-7 measures."""
        states = [m.model.state_dict() for m in self.members]
        return {
            "invalid_ratio_1e-3": [invalid_ratios(filter_norms(state), [1e-3])[0] for state in states],
            "network_entropy": [network_entropy(state, self.config.bins) for state in states],
        }

    def evaluate(self) -> list[dict[str, Any]]:
        """The task's metrics for every model: re-ID mAP, mINP, rank-1/5/10; classification top-1/5."""
        results = self.task.evaluate([m.model for m in self.members], self.device)
        for result, k in zip(results, self.model_ids, strict=True):
            result["model"] = k
        if self.rank is None:
            return results
        import torch.distributed as dist

        parts: list[list[dict[str, Any]]] = [[] for _ in range(self.config.models)]
        dist.all_gather_object(parts, results)
        return [result for part in parts for result in part]

    # ------------------------------------------------------------------ logging

    def _log_epoch(self, record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        for k, loss in enumerate(record["loss"]):
            self.writer.add_scalar(f"loss/model{k}", loss, epoch)
            self.writer.add_scalar(f"lr/model{k}", record["lr"][k], epoch)
            self.writer.add_scalar(f"train_accuracy/model{k}", record["train_accuracy"][k], epoch)
            self.writer.add_scalar(f"invalid_ratio_1e-3/model{k}", record["invalid_ratio_1e-3"][k], epoch)
            self.writer.add_scalar(f"network_entropy/model{k}", record["network_entropy"][k], epoch)
            if record["alphas"]:
                alphas = list(record["alphas"][k].values())
                self.writer.add_scalar(f"alpha_mean/model{k}", sum(alphas) / len(alphas), epoch)
        line = f"epoch {epoch}/{self.config.epochs}  loss " + " ".join(f"{v:.3f}" for v in record["loss"])
        if record["alphas"]:
            means = [sum(a.values()) / len(a) for a in record["alphas"]]
            line += "  mean alpha " + " ".join(f"{v:.3f}" for v in means)
        for result in record.get("metrics") or []:
            for key in self.task.metric_keys:
                self.writer.add_scalar(f"{key}/model{result['model']}", result[key], epoch)
        if record.get("metrics"):
            primary = self.task.primary
            line += f"  {primary} " + " ".join(f"{r[primary]:.3f}" for r in record["metrics"])
        self.log(f"{line}  ({record['seconds']:.1f} s)")
