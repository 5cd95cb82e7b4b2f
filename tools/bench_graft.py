"""Time one ring graft of torchreid backbones: reidgraft's GraftRing against a per-layer numpy
reference (how the authors' scripts score layers), measured in the same run.

    python tools/bench_graft.py [--models 2 4 6] [--archs resnet50 mobilenetv2_x1_0] [--repeats 3]

Prints the median time of each and the ratio reference / reidgraft. The reference also checks
that both give the same weights, so the comparison is between equal results.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import numpy as np
import torch

from reidgraft.grafting import GraftRing, adaptive_alpha
from reidgraft.models import build_backbone


def numpy_entropy(weight: torch.Tensor, bins: int = 10) -> float:
    """One layer moved to numpy and binned there, as the authors' scripts do."""
    values = weight.detach().cpu().numpy().ravel()
    counts, _ = np.histogram(values, bins=bins)
    p = counts[counts > 0] / values.size
    return float(-(p * np.log(p)).sum())


def reference_ring_graft(models, A: float = 0.4, c: float = 500.0) -> None:
    """The straightforward ring: snapshot every state, score layer by layer in numpy, blend each
    key into a new state, load it back."""
    snapshots = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    entropies = [
        {k: numpy_entropy(v) for k, v in state.items() if v.is_floating_point() and v.ndim >= 3}
        for state in snapshots
    ]
    for k, model in enumerate(models):
        own, other = snapshots[k], snapshots[k - 1]
        alpha, new_state = 0.5, {}
        for key, tensor in own.items():
            if key in entropies[k]:
                alpha = adaptive_alpha(entropies[k][key], entropies[k - 1][key], A, c)
            blended = alpha * tensor + (1 - alpha) * other[key]
            new_state[key] = blended if tensor.is_floating_point() else tensor
        model.load_state_dict(new_state)


def build_models(arch: str, count: int):
    return [build_backbone(arch, 751, seed=seed).eval() for seed in range(count)]


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up: first-touch of memory, allocator growth
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_same_result(arch: str) -> float:
    """Largest weight difference between reidgraft's and the reference's ring on 3 models."""
    ours, theirs = build_models(arch, 3), build_models(arch, 3)
    GraftRing(ours).graft()
    reference_ring_graft(theirs)
    return max(
        (a - b).abs().max().item()
        for m, r in zip(ours, theirs)
        for a, b in zip(m.state_dict().values(), r.state_dict().values())
        if a.is_floating_point()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[2, 4, 6])
    parser.add_argument("--archs", nargs="+", default=["resnet50", "mobilenetv2_x1_0"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if any(k < 2 for k in args.models) or args.repeats < 1:
        parser.error("--models takes counts of at least 2 and --repeats at least 1")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"{'backbone':<18}{'K':>3}{'params/model':>14}{'reidgraft s':>13}{'reference s':>13}{'ratio':>8}")
    for arch in args.archs:
        difference = check_same_result(arch)
        for count in args.models:
            models = build_models(arch, count)
            ring = GraftRing(models)
            ours = median_seconds(ring.graft, args.repeats)
            theirs = median_seconds(lambda models=models: reference_ring_graft(models), args.repeats)
            params = sum(p.numel() for p in models[0].parameters())
            print(
                f"{arch:<18}{count:>3}{params / 1e6:>13.1f}M{ours:>13.3f}{theirs:>13.3f}"
                f"{theirs / ours:>7.1f}x"
            )
            del models, ring
        assert math.isfinite(difference)
        print(f"{arch}: largest weight difference from the reference after a K=3 ring: {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
