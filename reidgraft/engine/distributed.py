"""How the trainer's models are spread over processes, behind one interface.

`SingleProcess`: all K models train here and graft through `GraftRing`. `OneModelPerProcess`:
under torchrun, process k trains model k alone and grafts over torch.distributed with a
`DistributedRing`, which has the same `.graft()` call as `GraftRing`. Both gather an epoch's
per-model records and metrics into model order, so the trainer never asks which one it has.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..config import ConfigError, TrainConfig
from ..grafting import GraftRing, RingExchangeError, SelfGraft, distributed_graft, peer_lost
from ..population.registry import POPULATIONS, PopulationSpec, active_specs


def self_graft(models: list[nn.Module], model_ids: list[int], config: TrainConfig) -> SelfGraft:
    """The noise or internal scion for these models (model k's noise seeded by seed + k)."""
    return SelfGraft(
        models, config.scion, [config.seed + k for k in model_ids],
        threshold=config.scion_threshold, noise_decay=config.noise_decay,
    )  # fmt: skip


def check_distributed(config: TrainConfig) -> None:
    """What one model per process cannot do yet, refused in one line: the specs say which
    methods and companions run in one process (DML needs every model's logits each step and
    PAPA their mean, a collective per step; EMA copies are evaluated in one process)."""
    able = " and ".join(name for name, spec in POPULATIONS.items() if spec.distributed)
    for flag, spec in active_specs(config):
        if spec.distributed:
            continue
        if isinstance(spec, PopulationSpec):
            raise ConfigError(
                f"{flag} trains its K models in one process; run it without torchrun and --distributed "
                f"({able} run distributed)"
            )
        raise ConfigError(f"{flag} runs in one process; run it without torchrun and --distributed")


class SingleProcess:
    """All K models in this process."""

    rank = None
    leader = True  # this process speaks for the run: logs, metrics.json

    def __init__(self, models: int):
        self.model_ids = list(range(models))

    def prepare(self, config: TrainConfig) -> None:
        """Nothing to check: every method trains in one process."""

    def build_ring(self, models: list[nn.Module], config: TrainConfig) -> GraftRing | SelfGraft | None:
        """The ring that grafts these models (None for one model: nothing to graft)."""
        if config.models == 1:
            return None
        if config.scion != "external":
            return self_graft(models, self.model_ids, config)
        return GraftRing(
            models, level=config.graft_level, fraction=config.filter_fraction, **config.graft_options()
        )

    def gather_record(self, record: dict[str, Any], per_model: Sequence[str]) -> dict[str, Any]:
        return record

    def gather_results(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return results


class DistributedRing:
    """Model `rank`'s part of the ring over torch.distributed: `.graft()` blends in the previous
    rank's pre-graft weights in place and returns `[alphas]`, like `GraftRing` for one model."""

    def __init__(self, model: nn.Module, *, timeout_s: float, **options):
        self.model, self.timeout_s, self.options = model, timeout_s, options
        self.last_exchange = None  # bytes and seconds of the latest exchange

    def graft(self) -> list[dict[str, float]]:
        alphas, self.last_exchange = distributed_graft(self.model, timeout_s=self.timeout_s, **self.options)
        return [alphas]


class OneModelPerProcess:
    """Model `rank` of a ring of `world` models, one per process of the initialised group."""

    def __init__(self, rank: int, world: int):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside the ring of {world} models")
        self.rank, self.world = rank, world
        self.model_ids = [rank]
        self.leader = rank == 0
        self.ring: DistributedRing | None = None
        self.timeout_s = TrainConfig.ring_timeout

    def prepare(self, config: TrainConfig) -> None:
        """Refuse what one model per process cannot train; take the ring's timeout (the process
        group's too), which every gather names."""
        check_distributed(config)
        self.timeout_s = config.ring_timeout

    def build_ring(self, models: list[nn.Module], config: TrainConfig) -> DistributedRing | SelfGraft | None:
        """This rank's part of the ring (None for one model)."""
        if config.models > 1 and config.scion != "external":
            return self_graft(models, self.model_ids, config)  # nothing to exchange
        if config.graft_level != "layer":
            raise ConfigError("graft_level filter runs in one process (the distributed ring grafts layers)")
        if config.models > 1:
            self.ring = DistributedRing(models[0], timeout_s=config.ring_timeout, **config.graft_options())
        return self.ring

    def gather_record(self, record: dict[str, Any], per_model: Sequence[str]) -> dict[str, Any]:
        """Every rank's record merged (all ranks get it): the `per_model` entries, and those of
        what the last exchange did ("exchanged"), joined in model order."""
        if self.ring is not None and self.ring.last_exchange is not None:
            stats = self.ring.last_exchange
            record["ring_exchange"] = {"bytes": stats.bytes_sent, "seconds": round(stats.seconds, 3)}
            self.ring.last_exchange = None
        parts: list[dict[str, Any]] = [{} for _ in range(self.world)]
        self._all_gather(parts, record, "the epoch's records")
        merged = dict(record)
        for key in per_model:
            values = [part.get(key) for part in parts]
            if any(key in part for part in parts):
                merged[key] = None if all(v is None for v in values) else [x for v in values for x in v]
        exchanged = [part.get("exchanged") or {} for part in parts]
        if any(exchanged):
            keys = dict.fromkeys(key for part in exchanged for key in part)
            merged["exchanged"] = {
                key: [x for part in exchanged for x in part.get(key) or []] for key in keys
            }
        merged["seconds"] = max(part["seconds"] for part in parts)
        if "ring_exchange" in record:
            merged["ring_exchange"] = {
                "bytes": sum(part["ring_exchange"]["bytes"] for part in parts),
                "seconds": max(part["ring_exchange"]["seconds"] for part in parts),
            }
        return merged

    def gather_results(self, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        parts: list[list[dict[str, Any]]] = [[] for _ in range(self.world)]
        self._all_gather(parts, results, "the evaluation results")
        return [result for part in parts for result in part]

    def _all_gather(self, parts: list[Any], mine: Any, what: str) -> None:
        """all_gather_object, with a peer that died or hangs named as the ring names it."""
        try:
            dist.all_gather_object(parts, mine)
        except RuntimeError as error:
            if not peer_lost(error):
                raise
            raise RingExchangeError(
                f"rank {self.rank}: gathering {what} from the other ranks did not complete within "
                f"{self.timeout_s:g} s ({str(error).splitlines()[0]}); a process died or hangs. "
                "Each rank's last complete checkpoint stays loadable"
            ) from None


# --------------------------------------------------------------------------- the process group


def join_process_group(models: int | None, device: str | None, ring_timeout: float | None) -> int:
    """Join torchrun's process group (NCCL for CUDA, gloo on CPU); return this process's rank.
    `models`, when given, must equal the number of processes."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError(
            "--distributed runs under torchrun: torchrun --nproc_per_node K tools/train.py ... --distributed"
        )
    world = int(os.environ["WORLD_SIZE"])
    if models is not None and models != world:
        raise ConfigError(f"--models {models} but torchrun started {world} processes; one model each")
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    timeout = ring_timeout or TrainConfig.ring_timeout
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout))
    return dist.get_rank()


def leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where tensors handed to a collective must live: NCCL takes CUDA tensors only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def smallest_over_ranks(value: int) -> int:
    """The minimum of `value` over every rank (a resume's common epoch)."""
    tensor = torch.tensor([value], device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def leader_decides(decide: Callable[[], Any]) -> Any:
    """Run `decide` on rank 0 alone and hand its result to every rank; a ConfigError it raises is
    raised on every rank (so rank 0 acts, say creating the run folder, before any other writes)."""
    outcome: list[Any] = [None, None]
    if dist.get_rank() == 0:
        try:
            outcome[0] = decide()
        except ConfigError as error:
            outcome[1] = str(error)
    dist.broadcast_object_list(outcome, src=0)
    if outcome[1] is not None:
        raise ConfigError(outcome[1])
    return outcome[0]


def is_distributed_failure(error: BaseException) -> bool:
    """A peer that died or hangs surfaces as one of these; other RuntimeErrors are bugs to show."""
    return isinstance(error, RingExchangeError | dist.DistError)
