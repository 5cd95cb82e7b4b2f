"""The ring over torch.distributed (gloo on 127.0.0.1, one process per model)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reidgraft.grafting import GraftRing
from tests.conftest import TinyNet, free_port, randomised

OPTIONS = dict(criterion="entropy", A=0.4, c=5.0)


def join(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))


def graft_worker(rank: int, world: int, port: int, folder: str) -> None:
    from reidgraft.grafting import distributed_graft

    join(rank, world, port)
    model = randomised(TinyNet(), seed=11 * rank + 1)
    alphas, stats = distributed_graft(model, timeout_s=60, **OPTIONS)
    torch.save({"state": model.state_dict(), "alphas": alphas, "bytes": stats.bytes_sent,
                "messages": stats.messages}, f"{folder}/rank{rank}.pt")  # fmt: skip
    dist.destroy_process_group()


def test_three_processes_apply_the_in_process_ring(tmp_path):
    world = 3
    mp.start_processes(
        graft_worker, args=(world, free_port(), str(tmp_path)), nprocs=world, start_method="spawn"
    )
    models = [randomised(TinyNet(), seed=11 * k + 1) for k in range(world)]
    expected_alphas = GraftRing(models, **OPTIONS).graft()
    for k, model in enumerate(models):
        result = torch.load(tmp_path / f"rank{k}.pt", weights_only=True)
        assert result["alphas"] == pytest.approx(expected_alphas[k], abs=1e-12)
        for key, tensor in model.state_dict().items():
            torch.testing.assert_close(result["state"][key], tensor, rtol=0, atol=1e-6)
        floats = [t for t in model.state_dict().values() if t.is_floating_point()]
        scores = 8 * len(expected_alphas[k])  # the sender's layer scores, float64
        assert result["bytes"] == sum(t.numel() * t.element_size() for t in floats) + scores
        assert result["messages"] == 2  # one buffer per dtype (weights, scores), not one per tensor


def stalled_worker(rank: int, world: int, port: int, folder: str, how: str) -> None:
    from reidgraft.grafting import RingExchangeError, distributed_graft

    join(rank, world, port)
    if rank == 1:
        if how == "dies":
            os._exit(3)
        time.sleep(120)  # hangs
        return
    started = time.perf_counter()
    try:
        distributed_graft(TinyNet(), timeout_s=5, **OPTIONS)
        outcome = "completed"
    except RingExchangeError as error:
        outcome = str(error)
    with open(f"{folder}/outcome.txt", "w") as file:
        file.write(f"{time.perf_counter() - started:.1f}\n{outcome}")
    os._exit(0)


@pytest.mark.parametrize("how", ["dies", "hangs"])
def test_a_dead_or_hung_neighbour_ends_the_exchange_within_the_timeout(tmp_path, how):
    context = mp.start_processes(
        stalled_worker, args=(2, free_port(), str(tmp_path), how), nprocs=2, start_method="spawn", join=False
    )
    deadline = time.monotonic() + 90
    while not (tmp_path / "outcome.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in context.processes:
        process.kill()
    seconds, message = (tmp_path / "outcome.txt").read_text().split("\n", 1)
    assert "rank 0: the ring exchange with rank 1 did not complete within 5 s" in message
    assert "a process died or hangs" in message
    assert float(seconds) < 30
