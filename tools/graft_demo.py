"""A short grafting demo: K torchreid backbones take a few SGD steps at different learning
rates on random images, then graft into each other in a ring; prints every convolution's
entropy in each model and the alpha each model receives for it.

    python tools/graft_demo.py [--arch mobilenetv2_x1_0] [--models 2] [--steps 3] [--c 500]
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from reidgraft.grafting import (
    CRITERION_NAMES,
    GraftRing,
    layer_entropy,
    ring_learning_rates,
    scored_keys,
)
from reidgraft.models import build_backbone


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenetv2_x1_0", help="any torchreid backbone name")
    parser.add_argument("--models", type=int, default=2, help="K, the number of models in the ring")
    parser.add_argument("--steps", type=int, default=3, help="SGD steps before grafting")
    parser.add_argument("--lr", type=float, default=0.05, help="base learning rate (the last model's)")
    parser.add_argument("--criterion", default="entropy", choices=CRITERION_NAMES)
    parser.add_argument("--A", type=float, default=0.4)
    parser.add_argument("--c", type=float, default=500.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.models < 1 or args.steps < 0:
        parser.error("--models must be at least 1 and --steps non-negative")

    classes, generator = 8, torch.Generator().manual_seed(args.seed)
    images = torch.randn(16, 3, 128, 64, generator=generator)
    labels = torch.randint(0, classes, (16,), generator=generator)
    try:
        models = [build_backbone(args.arch, classes, seed=args.seed + k) for k in range(args.models)]
    except ValueError as error:
        raise SystemExit(f"graft_demo: --arch: {error}") from None
    rates = ring_learning_rates(args.lr, args.models)
    for model, lr in zip(models, rates):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        model.train()
        for _ in range(args.steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    print(
        f"{args.models} x {args.arch}, {args.steps} SGD steps at lr " + ", ".join(f"{r:.4f}" for r in rates)
    )

    states = [m.state_dict() for m in models]
    keys = scored_keys(states[0])
    entropies = [[layer_entropy(s[key]) for key in keys] for s in states]
    try:
        ring = GraftRing(models, criterion=args.criterion, A=args.A, c=args.c)
    except ValueError as error:
        raise SystemExit(f"graft_demo: {error}") from None
    alphas = ring.graft()

    header = "".join(f"{f'H{k}':>8}" for k in range(args.models))
    header += "".join(f"{f'alpha{k}':>8}" for k in range(args.models))
    print(f"{'layer':<36}{header}")
    for i, key in enumerate(keys):
        row = "".join(f"{entropies[k][i]:>8.4f}" for k in range(args.models))
        row += "".join(f"{alphas[k].get(key, 1.0):>8.3f}" for k in range(args.models))
        print(f"{key:<36}{row}")
    if args.models == 2:
        a, b = (m.state_dict() for m in models)
        same = all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
        print(f"after one graft the two models hold {'identical' if same else 'DIFFERENT'} weights")
    print(f"{len(keys)} convolution layers grafted (alpha = share of its own weights a model keeps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
