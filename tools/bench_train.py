"""Training speed: images per second of reidgraft's trainer (K = 1, and K models in lockstep)
against a plain PyTorch loop for one model, with the same precision and memory format, measured
in the same run; or, with --sweep, the plain loop in fp32 against channels_last, bf16 autocast
and both.

    python tools/bench_train.py --device cpu --arch mobilenetv2_x1_0 --height 128 --width 64 --amp none
    python tools/bench_train.py --device cuda --arch resnet50 --height 256 --width 128 --amp bf16 \
        --channels-last
    python tools/bench_train.py --sweep --arch resnet50 --height 256 --width 128
    python tools/bench_train.py --population dml papa ema --models 2 --steps 20 --rounds 5

Every side trains on the same random images and labels, held in memory on the device (so the
numbers are the training step's, not JPEG decoding's): forward, label-smoothed cross-entropy,
backward and an AMSGrad step, batch 32 per model unless --batch-size says otherwise.
Goal: on a GPU, K = 4 in lockstep at least 0.9x the plain loop's images/s in total.
With --population, the K-model step of each population method (dml, papa, papa_all, ema: the
EMA of every model) against independent models (none), alternating; goal on this CPU for
K = 2: DML and PAPA add at most 10%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from reidgraft.config import build_config
from reidgraft.data import ReidSplits
from reidgraft.device import autocast, resolve_device
from reidgraft.engine import Trainer
from reidgraft.models import build_backbone

CLASSES = 64
DISTINCT_BATCHES = 4  # cycled through: enough that no cache holds one batch's answers


class MemoryBatches:
    """`steps` batches of random images and labels, already on the device, in the shape of a
    reidgraft training loader (the trainer sets `.sampler.epoch`)."""

    def __init__(self, steps: int, batch: int, height: int, width: int, device: torch.device, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.steps, self.sampler = steps, SimpleNamespace(epoch=0)
        self.batches = []
        for _ in range(min(steps, DISTINCT_BATCHES)):
            images = torch.randn(batch, 3, height, width, generator=generator)
            labels = torch.randint(CLASSES, (batch,), generator=generator)
            self.batches.append((images.to(device), labels.to(device), None, None))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return (self.batches[i % len(self.batches)] for i in range(self.steps))


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(args, amp: str, channels_last: bool, steps: int) -> float:
    """One model, the textbook loop (no host sync per step either): images per second."""
    device = resolve_device(args.device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = build_backbone(args.arch, CLASSES, seed=0).to(device, memory_format=layout).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=5e-4, amsgrad=True)
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    data = MemoryBatches(steps + 1, args.batch_size, args.height, args.width, device, seed=0)
    total = torch.zeros((), device=device)
    for step, (images, labels, _, _) in enumerate(data):
        if step == 1:  # the first step (allocations, kernel choice) is not timed
            synchronise(device)
            start = time.perf_counter()
        images = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        with autocast(device, amp):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        total += loss.detach()
    synchronise(device)
    return steps * args.batch_size / (time.perf_counter() - start)


POPULATION_SETTINGS = {
    "none": {"population": "none"},
    "graft": {"population": "graft"},  # (its work is at the epoch end, which this does not time)
    "dml": {"population": "dml"},
    "papa": {"population": "papa"},
    "papa_all": {"population": "papa", "papa_mode": "all"},
    "ema": {"population": "none", "ema": 0.999},
}


def trainer_run(args, models: int, amp: str, channels_last: bool, steps: int, **settings) -> float:
    """K models through reidgraft's trainer on in-memory batches: total images per second."""
    device = resolve_device(args.device)
    items = [(f"unused{i}.jpg", i % CLASSES, i % 2) for i in range(max(args.batch_size, CLASSES))]
    splits = ReidSplits("memory", items, items[:2], items[:2])
    config = build_config(
        dataset="synthetic", arch=args.arch, models=models, height=args.height, width=args.width,
        batch_size=args.batch_size, optimizer="amsgrad", lr=3e-4, device=args.device, amp=amp,
        channels_last=channels_last, weights=None, **settings,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, splits, Path(run_dir), log=lambda line: None)
        trainer.train_loaders = [
            MemoryBatches(steps, args.batch_size, args.height, args.width, device, seed=k)
            for k in range(len(trainer.train_loaders))  # (one for DML's shared batch)
        ]
        trainer.train_epoch(0, max_steps=1)  # warm-up
        synchronise(device)
        start = time.perf_counter()
        trainer.train_epoch(1, max_steps=steps)  # reads loss and accuracy once, at its end
        return models * steps * args.batch_size / (time.perf_counter() - start)


def compare_trainer(args) -> None:
    rounds = {"plain": [], "one": [], "many": []}
    for _ in range(args.rounds):  # alternate, so drifts in machine speed hit every side alike
        rounds["plain"].append(plain_loop(args, args.amp, args.channels_last, args.steps))
        rounds["one"].append(trainer_run(args, 1, args.amp, args.channels_last, args.steps))
        rounds["many"].append(trainer_run(args, args.models, args.amp, args.channels_last, args.steps))
    plain, one, many = (statistics.median(rounds[key]) for key in ("plain", "one", "many"))
    spread = {key: f"{min(v):.1f}-{max(v):.1f}" for key, v in rounds.items()}
    print(f"{'one model, plain PyTorch loop':<36}{plain:>9.1f} images/s   (rounds {spread['plain']})")
    print(f"{'one model, reidgraft trainer':<36}{one:>9.1f} images/s   {one / plain:.3f} x plain")
    label = f"{args.models} models in lockstep, reidgraft"
    print(f"{label:<36}{many:>9.1f} images/s   {many / plain:.3f} x plain (goal >= 0.9 on a GPU)")


def compare_populations(args) -> None:
    """Each population method's K-model step against independent models, alternating rounds."""
    names = ["none", *[name for name in args.population if name != "none"]]
    rounds = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            speed = trainer_run(
                args, args.models, args.amp, args.channels_last, args.steps, **POPULATION_SETTINGS[name]
            )
            rounds[name].append(speed)
    base = statistics.median(rounds["none"])
    model = build_backbone(args.arch, CLASSES, seed=0)
    copy_mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20
    print(f"an EMA copy holds one model's state: {copy_mb:.1f} MiB for {args.arch} ({CLASSES} classes)")
    for name, values in rounds.items():
        speed = statistics.median(values)
        extra = "" if name == "none" else f"   step time {base / speed - 1:+.1%} against none"
        label = f"{args.models} models, population {name}"
        print(f"{label:<36}{speed:>9.1f} images/s   (rounds {min(values):.1f}-{max(values):.1f}){extra}")


def sweep(args) -> None:
    settings = [("none", False), ("none", True), ("bf16", False), ("bf16", True)]
    rounds = {setting: [] for setting in settings}
    for _ in range(args.rounds):
        for amp, channels_last in settings:
            rounds[(amp, channels_last)].append(plain_loop(args, amp, channels_last, args.steps))
    base = statistics.median(rounds[("none", False)])
    for (amp, channels_last), values in rounds.items():
        speed = statistics.median(values)
        name = ("fp32" if amp == "none" else amp) + (" + channels_last" if channels_last else "")
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"{name:<24}{speed:>9.1f} images/s   {speed / base:.2f} x fp32   (rounds {spread})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--arch", default="mobilenetv2_x1_0")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model per step (default: 32)")
    parser.add_argument("--models", type=int, default=4, help="K for the lockstep run (default: 4)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (default: 10)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds; medians reported (default: 3)"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="fp32, channels_last, bf16, both: the plain loop"
    )
    parser.add_argument(
        "--population",
        nargs="+",
        choices=list(POPULATION_SETTINGS),
        help="time these population methods' K-model step against independent models (none)",
    )
    args = parser.parse_args(argv)
    if min(args.models, args.steps, args.rounds, args.batch_size) < 1:
        parser.error("--models, --steps, --rounds and --batch-size must be at least 1")
    device = resolve_device(args.device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{args.arch} at {args.height}x{args.width}, batch {args.batch_size}, {where}, {args.steps} steps, "
        f"median of {args.rounds} alternating rounds"
        + ("" if args.sweep else f", amp {args.amp}{', channels_last' if args.channels_last else ''}")
    )
    if args.sweep:
        sweep(args)
    elif args.population:
        if args.models < 2:
            parser.error("--population compares K-model methods: give --models 2 or more")
        compare_populations(args)
    else:
        compare_trainer(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
