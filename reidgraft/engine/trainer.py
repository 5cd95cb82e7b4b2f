"""K models trained in lockstep, exchanging what their population method says (docs/method.md
sections 4 and 10): grafted at every epoch end (Algorithm 1, the default), independent, deep
mutual learning, PAPA, or any method registered in `reidgraft.population`; for re-ID or
classification (the task supplies data, teacher logits and evaluation: `tasks.py`).

Each step every model takes a batch from its OWN loader (one shared batch when the method
shares one) and steps with its OWN optimizer and learning rate. The run's participants (the
population method, and companions such as EMA copies) add loss terms, act after each step,
add models to evaluate and exchange at epoch ends, through one lifecycle
(`population/participant.py`); the trainer knows none of them by name. K = 1 is the baseline
through the same code. With teachers (grafting+), each student's loss adds the distillation
term. Where the models live (all here, or one per process under torchrun) is the `group`'s
business (`distributed.py`).
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..analysis import filter_norms, invalid_ratios, network_entropy
from ..config import TrainConfig
from ..data import ReidSplits
from ..data.classification import ClassificationData
from ..data.loaders import set_epoch
from ..device import allow_fast_kernels, autocast, make_deterministic
from ..grafting import distillation_loss, ring_learning_rates
from ..models import load_pretrained
from ..models.reid_head import build_reid_model, head_options
from ..population import BN_IMAGES
from ..population.participant import Participant
from ..population.registry import POPULATIONS, build_participants
from ..progress import progress
from .checkpoint import CHECKPOINT_FORMAT, restore_rng_state, rng_state, upgrade_checkpoint
from .distributed import OneModelPerProcess, SingleProcess
from .logging import EPOCH_RECORD_DEFAULTS, EpochLog, best_epochs, k_model_report, metrics_file
from .losses import CenterLoss, center_optimizer, step_centers
from .optim import build_optimizer, build_scheduler, replay_schedule
from .preflight import Plan, preflight
from .run_dir import METHOD_VERSION, RunDir
from .runs import teacher_fingerprints
from .side_by_side import Workers, plan_side_by_side
from .tasks import REID_METRICS, Task, make_task
from .trained import TrainedRun, teacher_model

METRIC_KEYS = REID_METRICS
# an epoch record's entries that hold one value per model (gathered over the ranks in model order)
PER_MODEL_KEYS = (
    "loss",
    "train_accuracy",
    "lr",
    *EPOCH_RECORD_DEFAULTS,
    "invalid_ratio_1e-3",
    "network_entropy",
)


class Outputs:
    """One step's logits and pre-neck features per model (None until computed)."""

    def __init__(self, count: int):
        self.logits: list[torch.Tensor | None] = [None] * count
        self.features: list[torch.Tensor | None] = [None] * count


class EpochTotals:
    """Each model's summed loss, hits and images over an epoch, on its device (read once)."""

    def __init__(self, members: list[Member]):
        self.loss = [torch.zeros((), dtype=torch.float64, device=m.device) for m in members]
        self.hits = [torch.zeros((), dtype=torch.int64, device=m.device) for m in members]
        self.seen = [0] * len(members)

    def add(self, k: int, loss: torch.Tensor, logits: torch.Tensor, pids: torch.Tensor) -> None:
        self.loss[k] += loss.detach().double() * len(pids)
        self.hits[k] += (logits.detach().argmax(dim=1) == pids).sum()
        self.seen[k] += len(pids)

    def means(self) -> dict[str, list[float]]:
        return {
            "loss": [float(total) / max(n, 1) for total, n in zip(self.loss, self.seen, strict=True)],
            "train_accuracy": [int(hits) / max(n, 1) for hits, n in zip(self.hits, self.seen, strict=True)],
        }


@dataclass
class Member:
    """One model of the ring with what steps it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    initial_lr: float
    device: torch.device
    scaler: torch.amp.GradScaler | None = None
    # the center loss's centers and their own optimizer (with --center-loss-weight); not grafted
    center: CenterLoss | None = None
    center_optimizer: torch.optim.Optimizer | None = None


def threads_warning(threads: int, what: str) -> str:
    return (
        f"warning: this process uses {torch.get_num_threads()} intra-op threads, the run {what} with "
        f"{threads}; deterministic runs agree bit for bit only with the same count "
        f"(set OMP_NUM_THREADS={threads})"
    )


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
        group: SingleProcess | OneModelPerProcess | None = None,
        plan: Plan | None = None,
        label: str = "",
    ):
        """`group`: which of the K models this process trains and how they graft (default: all K
        here, grafted by `GraftRing`). `plan`: the config's preflight (devices, precision, initial
        weights), made here when not given. `label`: put before the progress lines (compare names
        its runs)."""
        self.label = label
        self.config, self.run = config, RunDir(run_dir)
        self.run_dir = self.run.path
        self.group = group or SingleProcess(config.models)
        self.model_ids = self.group.model_ids
        self.task = make_task(config, data)
        if config.deterministic:
            make_deterministic()
        else:
            allow_fast_kernels()
        self.plan = plan or preflight(config, data=False)
        self.devices = list(self.plan.devices)
        self.device = self.devices[self.model_ids[0]]  # where teachers and the task's evaluation run
        self.amp, self.channels_last = self.plan.amp, self.plan.channels_last
        self.task.runs_on(self.amp, self.channels_last)
        torch.manual_seed(config.seed)
        self.num_classes = self.task.num_classes
        # every model starts from these weights (its random parts from its own seed)
        self.initial_weights = self.plan.weights
        self.members = self._build_members()
        self.group.prepare(config)  # what the group checks and takes from the config
        # the population method, then its companions (EMA copies), over this process's models
        self.participants = build_participants([m.model for m in self.members], config, self.group)
        self.shared_batch = POPULATIONS[config.population].shared_batch
        self.side_by_side = plan_side_by_side(
            config.parallel_models, [m.device for m in self.members], [m.model for m in self.members],
            amp=self.amp, shared_batch=self.shared_batch,
            loss_terms=any(type(p).step_loss is not Participant.step_loss for p in self.participants),
        )  # fmt: skip
        self.teachers = [self._load_teacher(spec) for spec in config.teacher]
        # what each teacher's weights were: a teacher retrained at the same path is another teacher
        self.teacher_fingerprints = teacher_fingerprints(config.teacher)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smooth)
        # with a shared batch every model sees model 0's order and augmentation, read once
        readers = self.model_ids[:1] if self.shared_batch else self.model_ids
        self.train_loaders = self.task.train_loaders(readers, pin_memory=self.device.type == "cuda")
        for participant in self.participants:
            participant.plan_run(config.epochs, len(self.train_loaders[0]))
        self.epoch = 0  # epochs completed
        self.exchange_pending = False  # the models were saved before this epoch end's exchange
        self.exchanged: dict[str, Any] = {}  # what that exchange did, by record key, not yet filed
        self.history: list[dict[str, Any]] = []
        self.final: list[dict[str, Any]] | None = None
        # the participants' extra models' metrics at the last epoch (EMA copies, PAPA's average)
        self.final_extras: dict[str, Any] = {}
        self.log = log if self.group.leader else lambda *parts, **options: None
        self.epoch_log = EpochLog(
            self.run.tensorboard, config.epochs, self.task.metric_keys, self.task.primary, log
        )

    # ------------------------------------------------------------------ building

    def _build_members(self) -> list[Member]:
        config = self.config
        rates = ring_learning_rates(config.lr, config.models) if config.lr_spread == "cosine" else None
        members = []
        for k in self.model_ids:
            model = build_reid_model(
                config.arch, self.num_classes, seed=config.seed + k, with_features=self.task.uses_features(),
                **head_options(config.to_dict()),
            )  # fmt: skip
            if self.initial_weights.source is not None:
                load_pretrained(model, self.initial_weights.source)
            device = self.devices[k]
            model.to(
                device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format
            )
            lr = rates[k] if rates else config.lr
            optimizer = build_optimizer(config, model.parameters(), lr)
            # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none
            scaler = torch.amp.GradScaler(device.type) if self.amp == "fp16" else None
            member = Member(model, optimizer, build_scheduler(config, optimizer), lr, device, scaler)
            if config.center_loss_weight > 0:
                member.center = CenterLoss(self.num_classes, model.feature_dim, seed=config.seed + k).to(
                    device
                )
                member.center_optimizer = center_optimizer(member.center, config.center_lr)
            members.append(member)
        return members

    def _load_teacher(self, spec: str) -> nn.Module:
        """A frozen model from a reidgraft checkpoint: "PATH" (model 0) or "PATH:k"."""
        path, k = teacher_model(spec)
        run = TrainedRun(path)
        if not 0 <= k < run.count:
            raise ValueError(f"teacher {spec}: the run has {run.count} models, no model {k}")
        if run.num_classes != self.num_classes or run.raw_config["dataset"] != self.config.dataset:
            raise ValueError(
                f"teacher {spec} was trained on {run.raw_config['dataset']} with {run.num_classes} "
                f"identities; this run has {self.config.dataset} with {self.num_classes}"
            )
        teacher = run.model(k, self.device, self.channels_last)
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        return teacher

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "method_version": METHOD_VERSION,
            "task": self.task.kind,
            "data": self.task.data_fingerprint(),
            "model_ids": self.model_ids,
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "epoch": self.epoch,
            "models": [m.model.state_dict() for m in self.members],
            "optimizers": [m.optimizer.state_dict() for m in self.members],
            "schedulers": [m.scheduler.state_dict() for m in self.members],
            "scalers": [m.scaler.state_dict() if m.scaler else {} for m in self.members],
            "centers": [
                {"centers": m.center.state_dict(), "optimizer": m.center_optimizer.state_dict()}
                if m.center is not None
                else {}
                for m in self.members
            ],
            "rng": rng_state(),
            "intra_op_threads": torch.get_num_threads(),
            "history": self.history,
            # saved before the epoch end's exchange (the authors' order): a resume exchanges first
            "exchange_pending": self.exchange_pending,
            "participants": {p.name: p.state_dict() for p in self.participants},
            "teachers": self.teacher_fingerprints,
        }

    def load_state(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint of the same run (checked by the caller; its teachers here)."""
        payload = upgrade_checkpoint(payload)
        if self.config.teacher and payload.get("teachers") != self.teacher_fingerprints:
            raise ValueError(
                f"{self.run.path} distilled from other teacher weights than {', '.join(self.config.teacher)} "
                "hold now (retrained since, or recorded before fingerprints were kept); train a new run"
            )
        for member, model, optimizer in zip(
            self.members, payload["models"], payload["optimizers"], strict=True
        ):
            member.model.load_state_dict(model)
            member.optimizer.load_state_dict(optimizer)
            # The schedule is planned anew for this run's total (a resume may ask for more epochs)
            # and replayed to the epoch reached: the saved scheduler kept the old total.
            member.scheduler = replay_schedule(self.config, member.optimizer, payload["epoch"])
        for member, scaler in zip(self.members, payload.get("scalers", []), strict=False):
            if member.scaler is not None and scaler:
                member.scaler.load_state_dict(scaler)
        for member, center in zip(self.members, payload.get("centers", []), strict=False):
            if member.center is not None and center:
                member.center.load_state_dict(center["centers"])
                member.center_optimizer.load_state_dict(center["optimizer"])
        self.epoch = payload["epoch"]
        self.history = list(payload["history"])
        self.exchange_pending = bool(payload["exchange_pending"])
        saved = payload["participants"]
        for participant in self.participants:
            participant.load_state_dict(saved.get(participant.name) or {})
        restore_rng_state(payload["rng"])
        threads = payload.get("intra_op_threads")
        if self.config.deterministic and threads not in (None, torch.get_num_threads()):
            self.log(threads_warning(threads, "was trained"))

    def checkpoint_path(self) -> Path:
        """Where this process keeps its checkpoint: the run folder, or `rank<k>/` of it."""
        return self.run.checkpoint(self.group.rank)

    # ------------------------------------------------------------------ reporting

    def metrics_file(self) -> dict[str, Any]:
        """metrics.json: every epoch's record, the last epoch's metrics ("final"), each model's
        best evaluated epoch ("best") and the K-model report ("report"), each choice labelled with
        where it was made (validation, or the test set as the papers did); then each participant's
        settings, with the final metrics and K-model report of copies kept one per model (EMA)."""
        payload = metrics_file(
            self.task.kind,
            self.history,
            self.final,
            self.best(),
            report=self.report(),
            initialisation=self.initial_weights.description,
            precision={"amp": self.amp, "channels_last": self.channels_last},
            intra_op_threads=torch.get_num_threads(),
            step={**self.side_by_side.record(), "image_cache": self.task.image_cache()},
            data=self.task.data_fingerprint(),
            method_version=METHOD_VERSION,
        )
        for participant in self.participants:
            section = participant.settings()
            if participant.evaluates_each_model:
                name = participant.evaluates
                final = self.final_extras.get(f"{name}_metrics")
                evaluated = [record for record in self.history if record.get(f"{name}_metrics")]
                validation = evaluated[-1].get(f"{name}_val_metrics") if evaluated else None
                report = k_model_report(final, validation, self.task.metric_keys, self.task.primary)
                section = {**section, "final": final, "report": report}
            payload[participant.section] = section
        return payload

    def best(self) -> list[dict[str, Any]] | None:
        best = best_epochs(
            self.history,
            self.config.models,
            self.task.primary,
            on_validation=self.task.validation is not None,
        )
        if best and self.config.test_scoring == "last" and self.config.eval_every:
            for row in best:  # only the last epoch has test scores: no choice was made
                row["chosen_on"] = "the last epoch alone (test_scoring last)"
        return best

    def report(self) -> dict[str, Any] | None:
        """Model 0, the mean over K and the best of K at the last epoch, each labelled."""
        evaluated = [record for record in self.history if record.get("metrics")]
        final_validation = evaluated[-1].get("val_metrics") if evaluated else None
        return k_model_report(self.final, final_validation, self.task.metric_keys, self.task.primary)

    # ------------------------------------------------------------------ training

    def fit(self) -> list[dict[str, Any]]:
        """Train up to `config.epochs`, evaluating as configured; return the final metrics. Each
        epoch, in the authors' order (docs/method.md section 4): train, evaluate when due, save,
        then exchange (none after the last epoch, so the saved final models are the evaluated
        ones); with eval_after_graft the exchange comes right after training."""
        self.run.mark(clean=self.group.leader)  # once, before any rank writes a checkpoint
        if self.group.leader:
            self.run.lock()  # a second train into this folder is refused, naming this process
        try:
            if self.group.leader:
                self.run.write_config(self.config)
            while self.epoch < self.config.epochs:
                if self.exchange_pending:  # the run stopped after its last save, before that exchange
                    self._exchange_after_save()
                started = time.perf_counter()
                record = self._train()
                self._evaluate_when_due(record, started)
                self._end_epoch(record, started)
                if self.exchange_pending and self.epoch < self.config.epochs:
                    self._exchange_after_save(say=True)
        finally:
            try:
                self.epoch_log.close()
            finally:
                self.run.unlock()
        if self.final is None:  # resumed a run that had already reached its epochs
            self.final = self.evaluate()
            self.final_extras = self._evaluate_extras(last=True, kept_only=True)
            if self.group.leader:
                self.run.write_metrics(self.metrics_file())
        return self.final

    def _train(self) -> dict[str, Any]:
        """One epoch trained and the schedules stepped: its record. With eval_after_graft the
        epoch end's exchange follows at once, and the record holds what it did."""
        record = {"epoch": self.epoch + 1, **self.train_epoch(self.epoch)}
        self._check_finite(record["loss"])
        record["lr"] = [m.optimizer.param_groups[0]["lr"] for m in self.members]
        for member in self.members:
            member.scheduler.step()
        record.update(EPOCH_RECORD_DEFAULTS)
        self.epoch += 1
        if self.config.eval_after_graft:
            record.update(self._exchange())
        record.update(self.filter_health())
        return record

    def _evaluate_when_due(self, record: dict[str, Any], started: float) -> None:
        """The epoch's metrics into `record` (test, validation, the participants' extra models),
        when due: every eval_every epochs and after the last. An evaluation that fails keeps the
        epoch, saved as unevaluated, so that `--resume` continues after it (in one process only:
        a rank that fails alone cannot meet its peers' gathering)."""
        last = self.epoch == self.config.epochs
        if not (last or (self.config.eval_every and self.epoch % self.config.eval_every == 0)):
            return
        # test_scoring last: the test set once, after the last epoch; validation alone before it
        test = last or self.config.test_scoring == "when_due" or self.task.validation is None
        try:
            if test:
                record["metrics"] = self.evaluate()
            if self.task.validation is not None:
                record["val_metrics"] = self.evaluate(self.task.validation)
            extras = self._evaluate_extras(last, test=test)
            record.update(extras)
        except Exception:
            if self.group.rank is None:
                self._end_epoch(record, started, evaluation_failed=True)
            raise
        if last:
            self.final, self.final_extras = record["metrics"], extras

    def _end_epoch(self, record: dict[str, Any], started: float, evaluation_failed: bool = False) -> None:
        """File the epoch's record (gathered over the ranks; what the previous exchange did goes
        to the epoch it ended), log it, and save the checkpoint and metrics.json. An epoch whose
        evaluation failed is filed without metrics, in this process alone."""
        if evaluation_failed:
            record = {key: value for key, value in record.items() if "metrics" not in key}
        record["seconds"] = round(time.perf_counter() - started, 3)
        if evaluation_failed:
            record["evaluation_failed"] = True
        if self.exchanged:
            record["exchanged"], self.exchanged = self.exchanged, {}
        if not evaluation_failed:
            keys = dict.fromkeys([*PER_MODEL_KEYS, *(p.record_key for p in self.participants)])
            record = self.group.gather_record(record, list(keys))
        self.history.append(self._file_exchanged(record))
        if not evaluation_failed and self.group.leader:
            self.epoch_log.record(self.history[-1])
        self.exchange_pending = not self.config.eval_after_graft and any(
            participant.exchanges_after(self.epoch) for participant in self.participants
        )
        self.run.save(self.state(), rank=self.group.rank)
        if self.group.leader:
            self.run.write_metrics(self.metrics_file())

    def _exchange(self) -> dict[str, Any]:
        """The exchanges due now that `self.epoch` epochs are done: {record key: what it did}."""
        return {
            participant.record_key: participant.exchange(self.epoch)
            for participant in self.participants
            if participant.exchanges_after(self.epoch)
        }

    def _exchange_after_save(self, say: bool = False) -> None:
        """Exchange the models saved at the last epoch end. What it did travels with the next
        epoch's record and is filed under the exchanged epoch when that record is gathered: no
        extra collective, so a hung rank still meets the ring's timeout first. `say`: print what
        each participant says of it."""
        self.exchanged, self.exchange_pending = self._exchange(), False
        if say and self.group.leader:
            done = {"epoch": self.epoch, **self.exchanged}
            lines = [line for participant in self.participants if (line := participant.describe(done))]
            if lines:
                self.epoch_log.exchange(done, lines)

    def _file_exchanged(self, record: dict[str, Any]) -> dict[str, Any]:
        """Move what the exchange before this epoch did (and the ring's traffic) into the record
        of the epoch that exchange ended."""
        record = dict(record)
        exchanged = record.pop("exchanged", None)  # (a gathered record has the key, maybe None)
        if not exchanged:
            return record
        ended = {**self.history[-1], **exchanged}
        if "ring_exchange" in record and not self.config.eval_after_graft:
            ended["ring_exchange"] = record.pop("ring_exchange")
        self.history[-1] = ended
        return record

    def train_epoch(self, epoch: int, max_steps: int | None = None) -> dict[str, Any]:
        """One epoch of K models in lockstep (or its first `max_steps` steps, for benchmarks);
        returns mean loss and training accuracy per model. Losses and hits add up on each model's
        device and are read once at the end: no host synchronisation per step. On the CPU the
        models may step side by side (`side_by_side.py`); the next batches are then read while
        they do."""
        set_epoch(self.train_loaders, epoch)
        for member in self.members:
            member.model.train()
        totals = EpochTotals(self.members)
        steps = min(len(self.train_loaders[0]), max_steps or len(self.train_loaders[0]))
        shared = self.shared_batch
        bar = progress(
            itertools.islice(zip(*self.train_loaders, strict=True), steps),
            total=steps,
            # (one rank's lines are enough: the others would print the same, unlabelled)
            what=f"{self.label}epoch {epoch + 1}/{self.config.epochs}" if self.group.leader else "",
            per_step=self.config.batch_size * (1 if shared else len(self.members)),
        )
        batches_left = iter(bar)
        batches = next(batches_left, None)
        step = 0
        with Workers(self.side_by_side) as workers:
            while batches is not None:
                if shared:  # one batch for every model
                    batches = batches * len(self.members)
                inputs = [
                    (self._to_device(images, member.device), pids.to(member.device, non_blocking=True))
                    for member, (images, pids, *_) in zip(self.members, batches, strict=True)
                ]
                # on a shared batch every model's logits come first: each loss may read its peers'
                outputs = Outputs(len(self.members))
                if shared:
                    for k, (member, (images, _)) in enumerate(zip(self.members, inputs, strict=True)):
                        outputs.logits[k], outputs.features[k] = self._forward(member, images)
                wait = workers.start(
                    [
                        functools.partial(self._train_model, k, member, *inputs[k], outputs, totals)
                        for k, member in enumerate(self.members)
                    ]
                )
                batches = next(batches_left, None)
                wait()
                shares = self._lr_shares()
                for participant in self.participants:
                    participant.after_step(step, shares)
                step += 1
        return totals.means()

    def _train_model(
        self,
        k: int,
        member: Member,
        images: torch.Tensor,
        pids: torch.Tensor,
        outputs: Outputs,
        totals: EpochTotals,
    ) -> None:
        """Model k's step on its batch: forward (unless a shared batch's was done), loss with
        every term, backward, optimizer; its loss and hits added to `totals`."""
        if outputs.logits[k] is None:
            outputs.logits[k], outputs.features[k] = self._forward(member, images)
        logits, features = outputs.logits[k], outputs.features[k]
        with autocast(member.device, self.amp):
            loss = self.task.loss(logits, features, pids, self.criterion)
            if member.center is not None:
                loss = loss + self.config.center_loss_weight * member.center(features, pids)
            if self.teachers:
                loss = loss + self.config.kd_weight * distillation_loss(
                    logits, self._teacher_logits(images, member.device), self.config.kd_tau
                )
            for participant in self.participants:
                term = participant.step_loss(k, outputs.logits)
                if term is not None:
                    loss = loss + term
        self._step(member, loss)
        totals.add(k, loss, logits, pids)
        if not self.shared_batch:  # (the next model's term sees its own logits alone)
            outputs.logits[k] = outputs.features[k] = None

    def _forward(self, member: Member, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A training forward pass: (logits, the pre-neck feature or None)."""
        with autocast(member.device, self.amp):
            output = member.model(images)
        return output if isinstance(output, tuple) else (output, None)

    def _lr_shares(self) -> list[float]:
        """Each model's learning rate now, as a share of its initial one."""
        return [m.optimizer.param_groups[0]["lr"] / m.initial_lr for m in self.members]

    def _step(self, member: Member, loss: torch.Tensor) -> None:
        """Backward and step the model's optimizer (through the fp16 scaler when there is one),
        and the centers' own optimizer by the unweighted center-loss gradient."""
        member.optimizer.zero_grad(set_to_none=True)
        if member.center_optimizer is not None:
            member.center_optimizer.zero_grad(set_to_none=True)
        weight = self.config.center_loss_weight
        if member.scaler is None:
            loss.backward()
            member.optimizer.step()
            if member.center is not None:
                step_centers(member.center, member.center_optimizer, weight)
            return
        member.scaler.scale(loss).backward()
        member.scaler.step(member.optimizer)
        if member.center is not None:
            step_centers(member.center, member.center_optimizer, weight, member.scaler)
        member.scaler.update()

    def _check_finite(self, losses: list[float]) -> None:
        """A diverged model would poison its neighbours at the graft: stop with the reason."""
        for k, loss in zip(self.model_ids, losses, strict=True):
            if not math.isfinite(loss):
                if self.amp == "bf16" and self.device.type == "cpu":  # (oneDNN's: see bf16_hazard)
                    raise ValueError(
                        f"model {k}'s training loss became {loss} in epoch {self.epoch + 1} under bf16 "
                        "autocast; bf16 is the likely cause: train with --amp none (if fp32 diverges "
                        "too, lower the learning rate)"
                    )
                raise ValueError(
                    f"model {k}'s training loss became {loss} in epoch {self.epoch + 1} (amp {self.amp}); "
                    "lower the learning rate" + ("" if self.amp == "none" else ", or train with --amp none")
                )

    def _to_device(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        images = images.to(device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    @torch.no_grad()
    def _teacher_logits(self, images: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        inputs = images.to(self.device, non_blocking=True)
        return [self.task.teacher_logits(teacher, inputs).to(device) for teacher in self.teachers]

    # ------------------------------------------------------------------ evaluation

    def filter_health(self) -> dict[str, list[float]]:
        """Per model, after this epoch's graft: the fraction of filters whose L1 norm is under 1e-3
        and the network's entropy (sum of layer entropies), the papers' Fig. 6-7 measures."""
        states = [m.model.state_dict() for m in self.members]
        return {
            "invalid_ratio_1e-3": [invalid_ratios(filter_norms(state), [1e-3])[0] for state in states],
            "network_entropy": [network_entropy(state, self.config.bins) for state in states],
        }

    def evaluate(
        self, task: Task | None = None, models: list[nn.Module] | None = None
    ) -> list[dict[str, Any]]:
        """The task's metrics for every model (on the test data, or on `task`'s, such as the
        validation set; of `models` in place of the trained ones): re-ID mAP, mINP, rank-1/5/10;
        classification top-1/5."""
        results = (task or self.task).evaluate(models or [m.model for m in self.members])
        for result, k in zip(results, self.model_ids, strict=True):
            result["model"] = k
        return self.group.gather_results(results)

    def _untouched_rng(self):
        """A context that leaves every random generator as it found it: the EMA copies and the
        average are evaluated without changing what the run trains next."""
        cuda = sorted({d.index or 0 for d in self.devices if d.type == "cuda"})
        return torch.random.fork_rng(devices=cuda)

    def _evaluate_extras(self, last: bool, kept_only: bool = False, test: bool = True) -> dict[str, Any]:
        """The models the participants add (EMA copies, PAPA's average), evaluated as the run is:
        {record entry: metrics}. Copies kept one per model are numbered as the models are and
        also evaluated on the validation set; one model for the population gets one result.
        `kept_only`: only the copies kept one per model, whose final metrics metrics.json keeps.
        `test` False: on the validation set alone (what has none is not evaluated)."""
        found: dict[str, Any] = {}
        for participant in self.participants:
            if kept_only and not participant.evaluates_each_model:
                continue
            if not test and not (participant.evaluates_each_model and self.task.validation is not None):
                continue
            with self._untouched_rng():
                models = participant.extra_evaluations(last, lambda: self.task.bn_images(BN_IMAGES))
                if not models:
                    continue
                name = participant.evaluates
                if participant.evaluates_each_model:
                    if test:
                        found[f"{name}_metrics"] = self.evaluate(models=models)
                    if self.task.validation is not None:
                        found[f"{name}_val_metrics"] = self.evaluate(self.task.validation, models=models)
                else:
                    (result,) = self.task.evaluate(models)
                    found[f"{name}_metrics"] = {key: value for key, value in result.items() if key != "model"}
        return found
