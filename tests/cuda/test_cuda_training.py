"""What only a CUDA machine can check (marked `cuda`: skipped elsewhere, run by scripts/gpu-check.sh)."""

import numpy as np
import pytest
import torch

from reidgraft.engine import Trainer
from reidgraft.evaluation import evaluate
from tests.engine.test_trainer import splits, tiny_config  # noqa: F401 (a fixture)

pytestmark = pytest.mark.cuda


def quiet(line):
    return None


def test_bf16_channels_last_on_cuda_trains_with_features_on_the_gpu(splits, tmp_path):  # noqa: F811
    config = tiny_config(device="cuda", amp="bf16", channels_last=True, deterministic=False)
    trainer = Trainer(config, splits, tmp_path, log=quiet)
    final = trainer.fit()
    assert all(0.0 <= row["mAP"] <= 1.0 for row in final)
    query, gallery = trainer.task.features([m.model for m in trainer.members])
    assert query[0].is_cuda and gallery[0].is_cuda  # the evaluator's GEMMs run there


def test_deterministic_cuda_trains_instead_of_failing_in_backward(splits, tmp_path):  # noqa: F811
    runs = []
    for name in ("a", "b"):
        trainer = Trainer(tiny_config(device="cuda", deterministic=True), splits, tmp_path / name, log=quiet)
        trainer.fit()
        runs.append(trainer.members[0].model.state_dict())
    differing = [key for key in runs[0] if not torch.equal(runs[0][key], runs[1][key])]
    print(f"tensors differing between two deterministic CUDA runs: {len(differing)} of {len(runs[0])}")


def test_the_cuda_evaluator_matches_the_cpu_one():
    rng = np.random.default_rng(0)
    query, gallery = (
        rng.normal(size=(300, 64)).astype(np.float32),
        rng.normal(size=(2000, 64)).astype(np.float32),
    )
    labels = [rng.integers(0, 50, size) for size in (300, 2000)] + [
        rng.integers(0, 6, size) for size in (300, 2000)
    ]
    for metric in ("euclidean", "cosine"):
        on_cpu = evaluate(query, gallery, labels[0], labels[1], labels[2], labels[3], metric=metric)
        on_gpu = evaluate(
            torch.from_numpy(query).cuda(),
            torch.from_numpy(gallery).cuda(),
            *labels[:2],
            *labels[2:],
            metric=metric,
        )
        assert abs(on_cpu.mAP - on_gpu.mAP) < 1e-4 and abs(on_cpu.mINP - on_gpu.mINP) < 1e-4
        np.testing.assert_allclose(on_cpu.cmc, on_gpu.cmc, atol=1e-3)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_the_ring_over_several_gpus_equals_the_ring_on_one(splits, tmp_path):  # noqa: F811
    states = []
    for name, placement in (("one", {}), ("several", {"devices": "0,1"})):
        config = tiny_config(device="cuda", deterministic=True, models=2, epochs=1, **placement)
        trainer = Trainer(config, splits, tmp_path / name, log=quiet)
        trainer.fit()
        assert {m.device.index for m in trainer.members} == ({0} if not placement else {0, 1})
        states.append([{k: v.cpu() for k, v in m.model.state_dict().items()} for m in trainer.members])
    for one, several in zip(*states, strict=True):
        for key in one:
            torch.testing.assert_close(one[key], several[key], rtol=1e-5, atol=1e-6)
