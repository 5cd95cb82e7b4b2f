"""Paths only a GPU takes, checked here by recording what they hand to torch: every tensor given
to a distributed send lives on the model's device, and resume restores as many CUDA generators
as the host has."""

import pytest
import torch
import torch.distributed as dist

from reidgraft.engine.checkpoint import restore_rng_state, rng_state
from reidgraft.grafting import distributed_graft, ring
from tests.conftest import TinyNet


class Recorder:
    """Stands in for a 2-rank process group: records each P2P operation's tensor and answers the
    receive with the sender's own buffer (a neighbour with the same weights)."""

    def __init__(self):
        self.sent, self.received = [], []

    def op(self, function, tensor, peer):
        return (function, tensor, peer)

    def batch(self, operations):
        sends = [tensor for function, tensor, _ in operations if function is dist.isend]
        receives = [tensor for function, tensor, _ in operations if function is dist.irecv]
        self.sent += sends
        self.received += receives
        for outgoing, incoming in zip(sends, receives, strict=True):
            incoming.copy_(outgoing)
        return [type("Done", (), {"wait": lambda self, timeout=None: True})()]


@pytest.mark.parametrize("device", ["cpu", "meta"])  # meta: a device that is not the CPU
def test_every_tensor_sent_lives_on_the_models_device(monkeypatch, device):
    recorder = Recorder()
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "recorded")
    monkeypatch.setattr(dist, "P2POp", recorder.op)
    monkeypatch.setattr(dist, "batch_isend_irecv", recorder.batch)
    model = TinyNet().to(device)
    # meta tensors hold no values to score: the fixed criterion grafts them all the same
    options = {"criterion": "entropy"} if device == "cpu" else {"criterion": "fixed", "fixed_alpha": 0.5}
    distributed_graft(model, timeout_s=5, **options)
    assert recorder.sent and len(recorder.sent) == len(recorder.received)
    # one buffer per dtype: the weights (float32) and the layer scores (float64)
    assert {t.dtype for t in recorder.sent} == {torch.float32, torch.float64}
    assert all(t.device.type == device for t in recorder.sent + recorder.received)


def test_a_transport_error_that_is_no_timeout_names_its_cause(monkeypatch):
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(dist, "P2POp", lambda function, tensor, peer: tensor)

    def refuse(operations):
        raise RuntimeError("Tensors must be CUDA and dense")

    monkeypatch.setattr(dist, "batch_isend_irecv", refuse)
    with pytest.raises(ring.RingExchangeError) as caught:
        distributed_graft(TinyNet(), timeout_s=5)
    message = str(caught.value)
    assert "failed: Tensors must be CUDA and dense" in message and "on cpu" in message
    assert "died or hangs" not in message


def test_resume_restores_the_cuda_generators_this_host_has(monkeypatch):
    state = rng_state()
    state["cuda"] = [torch.full((16,), k, dtype=torch.uint8) for k in range(4)]  # saved with 4 GPUs
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda value, device: restored.append((int(value[0]), device))
    )
    restore_rng_state(state)
    assert restored == [(0, 0)]
