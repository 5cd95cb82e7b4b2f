"""The fingerprint of two tiny grafted runs: every model's final weights, buffers and optimizer
state, and every epoch's losses and alphas, hashed. `graft_digests.json` holds what the trainer
gave before grafting was expressed as a population method (commit b7945d4); the test in
`test_graft_unchanged.py` checks that it still gives exactly that. One change since, on purpose:
an exchange is numbered by the epochs completed on both orders, so noise_k2_after's noise is
what b7945d4 drew one epoch later (its digest is 7a2db7e's with `exchange(self.epoch + 1)` in
the evaluate-after-graft branch, and nothing else changed). Made by
`python -m tests.population.graft_digest > tests/population/graft_digests.json` on the CI
machine (CPU, 2 intra-op threads, deterministic kernels)."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch

# K = 3 with the papers' settings (external scion, cosine-spaced rates, evaluated every epoch),
# and K = 2 with the noise scion (the other graft path) and the evaluate-after-graft order
CASES = {
    "external_k3": dict(models=3, epochs=3, eval_every=1),
    "noise_k2_after": dict(models=2, epochs=2, scion="noise", eval_after_graft=True),
}
TINY = dict(train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)


def run_digest(splits, run_dir: Path, **overrides) -> str:
    from reidgraft.config import build_config
    from reidgraft.engine import Trainer

    values = dict(
        dataset="synthetic", arch="mobilenetv2_x1_0", batch_size=8, height=32, width=16, lr=0.01,
        optimizer="sgd", eval_batch_size=32, deterministic=True, device="cpu", weights="none",
        parallel_models="none",
    )  # fmt: skip
    trainer = Trainer(build_config(**{**values, **overrides}), splits, run_dir, log=lambda line: None)
    trainer.fit()
    digest = hashlib.sha256()
    for member in trainer.members:
        for key, tensor in member.model.state_dict().items():
            digest.update(key.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        for state in member.optimizer.state_dict()["state"].values():
            for tensor in state.values():
                if torch.is_tensor(tensor):
                    digest.update(tensor.cpu().numpy().tobytes())
    for record in trainer.history:
        kept = {key: record.get(key) for key in ("loss", "alphas", "grafted_filters", "metrics")}
        digest.update(json.dumps(kept, sort_keys=True).encode())
    return digest.hexdigest()


def digests() -> dict[str, str]:
    from reidgraft.data.datasets import synthetic_splits

    with tempfile.TemporaryDirectory() as folder:
        splits = synthetic_splits(Path(folder) / "data", **TINY)
        return {name: run_digest(splits, Path(folder) / name, **case) for name, case in CASES.items()}


if __name__ == "__main__":
    torch.set_num_threads(2)
    json.dump({"threads": 2, **digests()}, sys.stdout, indent=1)
    print()
