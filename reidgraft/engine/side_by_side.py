"""K models stepping side by side on the CPU: each model's step (forward, loss, backward,
optimizer) in a thread of its own with its share of the cores, instead of one model after
another with every core each.

Half of a small backbone's step is memory-bound elementwise work (batch norm, activations)
that a second core barely speeds up, so two models on one core each go faster than each model
on both (docs/performance.md: 1.17x for a CUHK01 epoch of two MobileNetV2s at 128x64, fp32, on
2 cores). Each thread works
on its own model, optimizer and batch; nothing is copied, so grafting, PAPA's pull, EMA and
checkpoints see each model's own weights. The loaders stay in the calling thread (their
augmentation borrows the global RNG, whose order must not depend on timing), and so do the
participants' hooks between steps. Up to `at_once` models hold their activations at once.

What changes is only how sums are split over threads: a model summed on one thread rounds
otherwise than on two, so losses agree with the one-after-another path to float tolerance, not
bit for bit; a run agrees with itself bit for bit (each model always runs on the same number
of threads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SideBySide:
    """How K models step: `at_once` in threads of `threads_each` intra-op threads (`at_once`
    1: one after another on every thread), and why, for metrics.json."""

    setting: str
    at_once: int
    threads_each: int
    reason: str

    def record(self) -> dict[str, object]:
        return {
            "parallel_models": self.setting,
            "models_at_once": self.at_once,
            "threads_per_model": self.threads_each,
            "why": self.reason,
        }


def plan_side_by_side(
    setting: str,
    devices: Sequence[torch.device],
    models: Sequence[nn.Module],
    *,
    amp: str,
    shared_batch: bool,
    loss_terms: bool,
) -> SideBySide:
    """Side by side where it pays and changes nothing but rounding: K >= 2 models on the CPU in
    fp32 (under bf16 it measured no faster: 0.90x for two MobileNetV2s at 256x128, 1.02x for two
    ResNet50s), two or more intra-op threads to share, each model on its own batch (a shared
    batch's loss reads every model's logits), no participant adding a loss term (its hook would
    run in several threads at once), and no dropout (it draws from the global RNG, which threads
    would read in an order that depends on timing). Needs torch's OpenMP backend, where each
    thread keeps its own intra-op count."""
    threads = torch.get_num_threads()

    def one_after_another(reason: str) -> SideBySide:
        return SideBySide(setting, 1, threads, reason)

    if setting == "none":
        return one_after_another("--parallel-models none")
    if len(models) < 2:
        return one_after_another("one model")
    if any(device.type != "cpu" for device in devices):
        return one_after_another("not on the CPU")
    if amp != "none":
        return one_after_another(f"{amp} autocast (measured no faster side by side)")
    if threads < 2:
        return one_after_another("one intra-op thread")
    if "OpenMP" not in torch.__config__.parallel_info():
        return one_after_another("torch's parallel backend is not OpenMP")
    if shared_batch:
        return one_after_another("the population method shares one batch")
    if loss_terms:
        return one_after_another("a participant adds a loss term")
    if any(
        isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for model in models for m in model.modules()
    ):
        return one_after_another("the backbone has dropout")
    at_once = min(len(models), threads)
    return SideBySide(setting, at_once, threads // at_once, f"{len(models)} models on {threads} threads")


class Workers:
    """The threads of one epoch: `run` calls each job in one of them and waits for all; the
    calling thread's intra-op thread count is restored at the end."""

    def __init__(self, plan: SideBySide):
        self.plan = plan
        self.pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.plan.at_once > 1:
            self.saved = torch.get_num_threads()
            self.pool = ThreadPoolExecutor(
                self.plan.at_once,
                thread_name_prefix="reidgraft-model",
                initializer=torch.set_num_threads,  # (a thread's own OpenMP team)
                initargs=(self.plan.threads_each,),
            )
        return self

    def start(self, jobs: Sequence[Callable[[], None]]) -> Callable[[], None]:
        """Start the jobs; returns the wait for them (which raises what a job raised). One after
        another in this thread when not side by side: the wait then does nothing."""
        if self.pool is None:
            for job in jobs:
                job()
            return lambda: None
        futures = [self.pool.submit(job) for job in jobs]

        def wait() -> None:
            for future in futures:
                future.result()

        return wait

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            try:
                self.pool.shutdown(wait=True, cancel_futures=True)
            finally:
                torch.set_num_threads(self.saved)
