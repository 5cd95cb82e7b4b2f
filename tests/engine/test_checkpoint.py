"""Checkpoint files (weights_only, atomic) and a distributed run's ranks merged into one run,
without torchrun: the rank folders are written here as each process would write them."""

import pytest
import torch

from reidgraft.config import build_config
from reidgraft.engine import RunDir, load_checkpoint
from reidgraft.engine.checkpoint import read_checkpoint, save_checkpoint


def rank_payload(k: int, epoch: int, models: int = 2) -> dict:
    """What process k of a distributed run saves: its own model alone, `model_ids` = [k]."""
    return {
        "format": 1, "task": "reid", "model_ids": [k], "config": build_config(models=models).to_dict(),
        "num_classes": 3, "epoch": epoch, "models": [{"w": torch.full((2,), float(k))}],
        "optimizers": [{}], "schedulers": [{}], "rng": {}, "history": [{"epoch": epoch}],
    }  # fmt: skip


def test_a_checkpoint_round_trips_under_weights_only(tmp_path):
    payload = rank_payload(0, epoch=3)
    save_checkpoint(tmp_path / "checkpoint.pt", payload)
    loaded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["models"][0]["w"], payload["models"][0]["w"])
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_damaged_and_foreign_files_are_named(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pt is not a reidgraft checkpoint or is damaged"):
        read_checkpoint(tmp_path / "broken.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="foreign.pt is not a reidgraft checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no checkpoint at .*empty/checkpoint.pt"):
        load_checkpoint(tmp_path / "empty")


def test_rank_folders_load_as_one_run_of_k_models_in_order(tmp_path):
    run = RunDir(tmp_path)
    for k in (1, 0):  # written in any order
        run.save(rank_payload(k, epoch=2), rank=k)
    assert run.is_distributed and run.checkpoint(1) == tmp_path / "rank1" / "checkpoint.pt"
    merged = load_checkpoint(tmp_path)
    assert merged["ranks"] == 2 and merged["epoch"] == 2
    assert [float(state["w"][0]) for state in merged["models"]] == [0.0, 1.0]
    assert "optimizers" not in merged  # a merged run is for evaluation and analysis, not resume


def test_ranks_of_different_epochs_or_a_missing_rank_are_refused(tmp_path):
    run = RunDir(tmp_path / "ahead")
    run.save(rank_payload(0, epoch=2), rank=0)
    run.save(rank_payload(1, epoch=3), rank=1)
    with pytest.raises(ValueError, match=r"saved different epochs \[2, 3\]; resume the run first"):
        load_checkpoint(run.path)
    lonely = RunDir(tmp_path / "lonely")
    lonely.save(rank_payload(0, epoch=1, models=3), rank=0)
    lonely.save(rank_payload(2, epoch=1, models=3), rank=2)
    with pytest.raises(ValueError, match=r"models \[0, 2\]; a run of 3 needs 0..2"):
        load_checkpoint(lonely.path)


def test_a_rank_keeps_its_previous_checkpoint_and_a_resume_finds_the_common_epoch(tmp_path):
    run = RunDir(tmp_path)
    run.save(rank_payload(0, epoch=1), rank=0)
    run.save(rank_payload(0, epoch=2), rank=0)  # rank 0 finished epoch 2, rank 1 never saved it
    run.save(rank_payload(1, epoch=1), rank=1)
    assert read_checkpoint(run.previous_checkpoint(0))["epoch"] == 1
    everyone = {0: 2, 1: 1}  # what an all_reduce(MIN) over the ranks would see
    smallest = lambda epoch: min(everyone.values())  # noqa: E731
    assert run.rank_checkpoint_at(0, smallest) == run.previous_checkpoint(0)
    assert run.rank_checkpoint_at(1, smallest) == run.checkpoint(1)
    assert run.resume_payload(0, smallest)["epoch"] == 1
    run.checkpoint(0).unlink()  # stopped between keeping the previous and writing the next
    assert run.latest_checkpoint(0) == run.previous_checkpoint(0)
