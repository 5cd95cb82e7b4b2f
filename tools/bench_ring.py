"""Time the ring graft of torchreid ResNet50 states over torch.distributed (gloo on loopback, one
process per model) against the same ring blended in one process (`GraftRing`), in one run.

    python tools/bench_ring.py [--processes 2 4] [--arch resnet50] [--repeats 3]

Each process exchanges its pre-graft state and layer scores with its neighbours (one flat buffer
per dtype) and blends; the time is the slowest rank's, median over repeats. On a machine with fewer cores than
processes the ranks share cores, which the in-process ring does not need to.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reidgraft.grafting import (
    GraftRing,
    distributed_graft,
)
from reidgraft.models import build_backbone


def worker(rank: int, world: int, port: int, arch: str, repeats: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=300))
    model = build_backbone(arch, 751, seed=rank)
    rows = []
    for _ in range(repeats):
        dist.barrier()
        started = time.perf_counter()
        _, stats = distributed_graft(model, timeout_s=300)
        rows.append((time.perf_counter() - started, stats.seconds, stats.bytes_sent, stats.messages))
    torch.save(rows, f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{args.arch}, gloo on 127.0.0.1, {os.cpu_count()} cores; medians of {args.repeats}")
    for world in args.processes:
        with tempfile.TemporaryDirectory() as folder:
            mp.start_processes(
                worker,
                args=(world, free_port(), args.arch, args.repeats, folder),
                nprocs=world,
                start_method="spawn",
            )
            ranks = [torch.load(f"{folder}/rank{k}.pt", weights_only=True) for k in range(world)]
        slowest = [max(rank[i][0] for rank in ranks) for i in range(args.repeats)]
        exchange = [max(rank[i][1] for rank in ranks) for i in range(args.repeats)]
        sent, messages = ranks[0][0][2], ranks[0][0][3]
        models = [build_backbone(args.arch, 751, seed=k) for k in range(world)]
        ring = GraftRing(models)
        in_process = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            ring.graft()
            in_process.append(time.perf_counter() - started)
        distributed, local = statistics.median(slowest), statistics.median(in_process)
        exchanged = statistics.median(exchange)
        print(
            f"K={world}: distributed {distributed:.2f} s per graft (exchange {exchanged:.2f} s, "
            f"{sent / 2**20:.0f} MiB sent by each rank in {messages} messages) | "
            f"in one process {local:.2f} s | distributed / in-process {distributed / local:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
