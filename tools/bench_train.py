"""Images per second of K models trained in lockstep by reidgraft's trainer, against one model
trained alone by a plain PyTorch loop, measured in the same run on the same data.

    python tools/bench_train.py [--models 4] [--steps 20] [--arch mobilenetv2_x1_0]

Goal: total images/s over the K models >= 0.95 x one model alone (the trainer adds nothing but
the compute). Both sides read images in the main process and use the same transforms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from reidgraft.config import build_config
from reidgraft.data import build_train_loaders, load_reid_dataset
from reidgraft.engine import Trainer
from reidgraft.models import build_backbone


def plain_loop(splits, config, steps: int) -> float:
    """One model, one loader, the textbook loop: images per second over `steps` steps."""
    (loader,) = build_train_loaders(
        splits.train,
        count=1,
        seed=config.seed,
        height=config.height,
        width=config.width,
        augment=config.transforms,
        batch_size=config.batch_size,
    )
    model = build_backbone(config.arch, splits.num_train_pids, seed=0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, amsgrad=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    batches = iter(loader)
    images, pids, _, _ = next(batches)  # warm-up step, not timed
    criterion(model(images), pids).backward()
    start, seen = time.perf_counter(), 0
    for _, (images, pids, _, _) in zip(range(steps), batches):
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), pids).backward()
        optimizer.step()
        seen += len(pids)
    return seen / (time.perf_counter() - start)


def trainer_run(splits, config, steps: int) -> float:
    """K models through the trainer: total images per second over `steps` lockstep steps."""
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, splits, Path(run_dir), log=lambda line: None)
        trainer.train_epoch(0, max_steps=1)  # warm-up
        start = time.perf_counter()
        trainer.train_epoch(1, max_steps=steps)
        return config.models * steps * config.batch_size / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--arch", default="mobilenetv2_x1_0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", default="./data")
    args = parser.parse_args()
    if min(args.models, args.steps, args.rounds) < 1:
        parser.error("--models, --steps and --rounds must be at least 1")

    splits = load_reid_dataset("synthetic", args.root)
    common = dict(dataset="synthetic", arch=args.arch, height=128, width=64, batch_size=32, device="cpu")
    single = build_config(**common, models=1)
    ring = build_config(**common, models=args.models)
    if len(splits.train) < (args.steps + 2) * 32:
        parser.error(f"--steps {args.steps} needs more training images than the synthetic set has")

    print(
        f"{args.arch} at 128x64, batch 32, CPU, {torch.get_num_threads()} threads, "
        f"{args.steps} steps, median of {args.rounds} alternating rounds"
    )
    rounds = {"alone": [], "one": [], "many": []}
    for _ in range(args.rounds):  # alternate, so drifts in machine speed hit all three alike
        rounds["alone"].append(plain_loop(splits, single, args.steps))
        rounds["one"].append(trainer_run(splits, single, args.steps))
        rounds["many"].append(trainer_run(splits, ring, args.steps))
    alone, one, many = (statistics.median(rounds[key]) for key in ("alone", "one", "many"))
    spread = {key: f"{min(v):.1f}-{max(v):.1f}" for key, v in rounds.items()}
    print(f"{'one model, plain PyTorch loop':<40}{alone:>8.1f} images/s   (rounds {spread['alone']})")
    print(f"{'one model, reidgraft trainer':<40}{one:>8.1f} images/s   {one / alone:.3f} x alone")
    label = f"{args.models} models in lockstep, reidgraft"
    print(f"{label:<40}{many:>8.1f} images/s   {many / alone:.3f} x alone (goal >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
