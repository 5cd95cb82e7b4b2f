import pytest


@pytest.fixture(scope="session")
def collapsed_val_run(tmp_path_factory):
    """A 1-model, 1-epoch synthetic run holding out 4 validation identities; its features are
    nearly constant (one epoch on 32x16 images)."""
    from reidgraft.config import build_config
    from reidgraft.data.datasets import synthetic_splits
    from reidgraft.engine import Trainer

    root = tmp_path_factory.mktemp("data")
    splits = synthetic_splits(
        root, train_ids=10, test_ids=6, images_per_id=6, distractors=2, height=32, width=16
    )
    config = build_config(
        dataset="synthetic", root=str(root), models=1, epochs=1, batch_size=8, height=32, width=16,
        optimizer="sgd", lr=0.01, device="cpu", val_ids=4,
    )  # fmt: skip
    run = tmp_path_factory.mktemp("run")
    Trainer(config, splits, run, log=lambda line: None).fit()  # (it holds the 4 out itself)
    return run


@pytest.fixture(scope="session")
def val_run(collapsed_val_run, tmp_path_factory):
    """collapsed_val_run with freshly initialised weights: features that vary from person to person."""
    from reidgraft.engine import load_checkpoint
    from reidgraft.engine.checkpoint import save_checkpoint
    from reidgraft.models import build_backbone

    payload = load_checkpoint(collapsed_val_run)
    payload["models"] = [
        build_backbone(payload["config"]["arch"], payload["num_classes"], seed=3).state_dict()
    ]
    run = tmp_path_factory.mktemp("lively")
    save_checkpoint(run / "checkpoint.pt", payload)
    return run
