"""K models stepping side by side on the CPU (engine/side_by_side.py) against one after another:
bit for bit the same run as one after another on a thread each, for every population method;
one step as accurate against fp64 as on every thread; checkpoints that resume either way; and
the cases where it must not be used."""

import json
import math
import subprocess
import sys
import threading

import pytest
import torch

from reidgraft.engine import Trainer, load_checkpoint
from reidgraft.engine.side_by_side import plan_side_by_side
from reidgraft.models import build_backbone

from .tiny import config

CPU = torch.device("cpu")
needs_two_threads = pytest.mark.skipif(torch.get_num_threads() < 2, reason="side by side needs 2 threads")

METHODS = {
    "graft": dict(),
    "none": dict(population="none"),
    "graft_k3": dict(models=3),  # (3 models on 2 threads: two at a time)
    "papa_gradual": dict(population="papa", papa_every=2),
    "papa_all": dict(population="papa", papa_mode="all", papa_every_epochs=1),
    "ema_graft": dict(ema=0.9),
    "strong": dict(
        loss=["softmax", "triplet"],
        sampler="identity",
        num_instances=2,
        bnneck=True,
        center_loss_weight=0.0005,
        optimizer="adam",
        lr=3.5e-4,
    ),  # fmt: skip
}


def train(splits, folder, threads: int | None = None, **settings) -> Trainer:
    """A tiny run, on `threads` intra-op threads when given (the calling thread's count)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads or saved)
    try:
        trainer = Trainer(config(**settings), splits, folder, log=lambda line: None)
        trainer.fit()
    finally:
        torch.set_num_threads(saved)
    return trainer


def assert_same(mine: Trainer, theirs: Trainer) -> None:
    """Bit for bit: every epoch's losses and alphas, and every model's and EMA copy's state."""
    for key in ("loss", "alphas", "train_accuracy"):
        assert [r.get(key) for r in mine.history] == [r.get(key) for r in theirs.history], key
    for a, b in zip(mine.members, theirs.members, strict=True):
        for name, value in a.model.state_dict().items():
            assert torch.equal(value, b.model.state_dict()[name]), name
    for a, b in zip(mine.participants, theirs.participants, strict=True):
        for copy, other in zip(getattr(a, "copies", []), getattr(b, "copies", []), strict=True):
            for name, value in copy.named_parameters():
                assert torch.equal(value, other.get_parameter(name)), name
            # (not their batch-norm statistics: evaluation measures those again, summed on the
            # calling thread's count)


@needs_two_threads
@pytest.mark.parametrize("method", METHODS)
def test_side_by_side_is_one_after_another_on_a_thread_each(splits, tmp_path, method):
    """What the threads change is only how many threads sum each model's numbers: with each
    model on as many threads one after another, the run is the same bit for bit (grafting,
    PAPA's pull, EMA and the center loss included)."""
    settings = METHODS[method]
    side = train(splits, tmp_path / "side", **settings)
    each = side.side_by_side.threads_each
    after = train(splits, tmp_path / "after", threads=each, **settings, parallel_models="none")
    models, threads = settings.get("models", 2), torch.get_num_threads()
    at_once = min(models, threads)
    assert side.side_by_side.at_once == at_once and after.side_by_side.at_once == 1
    assert_same(side, after)
    metrics = json.loads((tmp_path / "side" / "metrics.json").read_text())
    assert metrics["step"].pop("image_cache")["kept"] is True  # (tests/data/test_image_cache.py)
    assert metrics["step"] == {
        "parallel_models": "auto", "models_at_once": at_once, "threads_per_model": threads // at_once,
        "why": f"{models} models on {threads} threads",
    }  # fmt: skip


def gradient_error(arch: str, size: tuple[int, int], threads: int | None, reference=None):
    """One step's gradients of `arch` in fp32 (computed in a thread of `threads` intra-op
    threads, or in this thread when None) against `reference`; with no reference, the fp64 ones."""
    model = build_backbone(arch, 8, seed=0).train()
    images = torch.randn(8, 3, *size, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8)

    def gradients(dtype=torch.float32) -> torch.Tensor:
        copy = build_backbone(arch, 8, seed=0).train().to(dtype)
        copy.load_state_dict(model.state_dict())
        torch.nn.functional.cross_entropy(copy(images.to(dtype)), labels).backward()
        return torch.cat([p.grad.double().flatten() for p in copy.parameters()])

    if reference is None:
        return gradients(torch.float64)
    found = {}
    if threads is None:
        found["g"] = gradients()
    else:
        saved = torch.get_num_threads()
        worker = threading.Thread(
            target=lambda: torch.set_num_threads(threads) or found.update(g=gradients())
        )
        worker.start()
        worker.join()
        torch.set_num_threads(saved)  # (torch keeps one process-wide count as well)
    return ((found["g"] - reference).norm() / reference.norm()).item()


@needs_two_threads
def test_a_model_stepped_in_its_thread_is_as_accurate_as_on_every_thread():
    # Against fp64: one thread's sums round otherwise than two's, no worse. (MobileNetV2 at random
    # initialisation is ill-conditioned: fp32 gradients are within about 2% of fp64's either way;
    # ResNet18's within 1e-5.)
    for arch, size, bound in (("resnet18", (64, 32), 1e-5), ("mobilenetv2_x1_0", (64, 32), 5e-2)):
        reference = gradient_error(arch, size, None)
        on_every = gradient_error(arch, size, None, reference)
        in_thread = gradient_error(arch, size, 1, reference)
        assert on_every < bound and in_thread < bound, (arch, on_every, in_thread)
        assert in_thread < 2 * on_every + 1e-7, (arch, on_every, in_thread)


@needs_two_threads
def test_checkpoints_resume_either_way(splits, tmp_path):
    straight = {
        mode: train(splits, tmp_path / mode, epochs=3, parallel_models=mode) for mode in ("auto", "none")
    }
    for made, resumed in (("none", "auto"), ("auto", "none")):
        run = tmp_path / f"{made}-then-{resumed}"
        train(splits, run, epochs=2, parallel_models=made)
        trainer = Trainer(config(epochs=3, parallel_models=resumed), splits, run, log=lambda line: None)
        trainer.load_state(load_checkpoint(run))
        trainer.fit()
        assert trainer.side_by_side.setting == resumed
        # the first two epochs as made, the third as resumed
        assert [r["loss"] for r in trainer.history[:2]] == [r["loss"] for r in straight[made].history[:2]]
        assert trainer.history[2]["loss"] != straight[made].history[2]["loss"]
        assert all(math.isfinite(loss) for loss in trainer.history[2]["loss"])


def test_side_by_side_is_used_only_where_it_changes_nothing_but_rounding():
    models = [torch.nn.Sequential(torch.nn.Linear(2, 2)) for _ in range(2)]
    threads = torch.get_num_threads()

    def plan(setting="auto", devices=(CPU, CPU), chosen=models, shared=False, amp="none", terms=False):
        return plan_side_by_side(
            setting, list(devices), chosen, amp=amp, shared_batch=shared, loss_terms=terms
        )

    if threads >= 2:
        assert plan().at_once == 2 and plan().threads_each == threads // 2
    assert plan("none").reason == "--parallel-models none"
    assert plan(chosen=models[:1]).reason == "one model"
    assert plan(devices=(CPU, torch.device("cuda", 0))).reason == "not on the CPU"
    dropout = [torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)) for _ in range(2)]
    no_op = [torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.0)) for _ in range(2)]
    if threads >= 2:
        assert plan(shared=True).reason == "the population method shares one batch"
        assert plan(terms=True).reason == "a participant adds a loss term"
        assert plan(amp="bf16").reason == "bf16 autocast (measured no faster side by side)"
        assert plan(chosen=dropout).reason == "the backbone has dropout"
        assert plan(chosen=no_op).at_once == 2
    for reasoned in (plan("none"), plan(chosen=models[:1]), plan(chosen=dropout)):
        assert reasoned.at_once == 1


@needs_two_threads
def test_a_failing_step_stops_the_epoch_with_its_error(splits, tmp_path, monkeypatch):
    trainer = Trainer(config(), splits, tmp_path, log=lambda line: None)

    def broken(member, loss):
        raise RuntimeError("the step broke")

    monkeypatch.setattr(trainer, "_step", broken)
    with pytest.raises(RuntimeError, match="the step broke"):
        trainer.train_epoch(0, max_steps=2)
    assert torch.get_num_threads() >= 2  # the calling thread's count is back


def test_the_side_by_side_step_reads_no_memory_it_did_not_write():
    # Issue 35's check (tests/engine/heap_fill_step.py), on the step as a thread runs it: the
    # same gradients whatever freed memory held. A fresh process: the heap's history matters.
    cases = ["mobilenetv2_x1_0:128x64:side", "resnet50:64x32:side", "osnet_x1_0:64x32:side"]
    done = subprocess.run(
        [sys.executable, "-m", "tests.engine.heap_fill_step", *cases],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == dict.fromkeys(cases, 0)
