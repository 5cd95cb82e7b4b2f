"""The tiny deterministic run the population tests train: synthetic people at 32x16, two
MobileNetV2s from random weights, SGD, two epochs, fp32 on the CPU."""

from reidgraft.config import TrainConfig, build_config

TINY = dict(train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)


def config(**overrides) -> TrainConfig:
    values = dict(
        dataset="synthetic", arch="mobilenetv2_x1_0", models=2, epochs=2, batch_size=8, height=32,
        width=16, lr=0.01, optimizer="sgd", eval_batch_size=32, deterministic=True, device="cpu",
        weights="none", amp="none",
    )  # fmt: skip
    return build_config(**{**values, **overrides})
