"""The strong re-ID baseline's pieces: batch-hard triplet, center loss, the identity sampler,
the BNNeck, last stride 1, the multistep schedule with warm-up, and a grafted run of them all."""

import collections
import json

import pytest
import torch
from torch import nn

from reidgraft.config import ConfigError, build_config
from reidgraft.data.loaders import IdentitySampler, build_train_loaders
from reidgraft.engine import Trainer, load_checkpoint
from reidgraft.engine.losses import CenterLoss, batch_hard_triplet
from reidgraft.engine.optim import build_optimizer, build_scheduler, replay_schedule
from reidgraft.engine.preflight import check_names
from reidgraft.grafting import graft_state, scored_keys
from reidgraft.models.reid_head import BNNeckClassifier, build_reid_model

from .test_trainer import splits, tiny_config  # noqa: F401 (a fixture)


def test_batch_hard_triplet_equals_a_hand_computation():
    # 1-D features, so every distance is |a - b|: labels 0 0 1 1 at 0, 1, 3, 6
    features = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: farthest positive 1, nearest negative 3 -> max(0, 1 - 3 + m)
    # anchor 1: positive 1, negative 2                  -> max(0, 1 - 2 + m)
    # anchor 2: positive 3, negative 2 (from 1)         -> max(0, 3 - 2 + m)
    # anchor 3: positive 3, negative 5 (from 1)         -> max(0, 3 - 5 + m)
    margin = 0.5
    expected = sum(max(0, p - n + margin) for p, n in [(1, 3), (1, 2), (3, 2), (3, 5)]) / 4
    assert batch_hard_triplet(features, labels, margin).item() == pytest.approx(expected)
    # an anchor without a positive is left out of the mean
    lone = batch_hard_triplet(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([0, 0, 1]), margin)
    assert lone.item() == pytest.approx((max(0, 1 - 3 + margin) + max(0, 1 - 2 + margin)) / 2)


def test_batch_hard_triplet_is_computed_in_fp32_under_autocast():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(64, 2048, generator=generator)
    labels = torch.arange(16).repeat_interleave(4)
    exact = batch_hard_triplet(features, labels, 0.3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = batch_hard_triplet(features, labels, 0.3)
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(exact.item(), rel=1e-5)


def test_triplet_distances_have_shapes_on_the_meta_device():  # (no autocast there to switch off)
    from reidgraft.engine.losses import pairwise_distances

    assert pairwise_distances(torch.zeros(4, 8, device="meta")).shape == (4, 4)


def test_batch_hard_triplet_gradient_moves_the_hard_pairs():
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [5.0, 0.0]], requires_grad=True)
    loss = batch_hard_triplet(features, torch.tensor([0, 0, 1, 1]), 0.3)
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


def test_center_loss_is_the_mean_squared_distance_to_the_centers():
    center = CenterLoss(3, 2, seed=0)
    with torch.no_grad():
        center.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]))
    features = torch.tensor([[1.0, 0.0], [1.0, 3.0]])
    assert center(features, torch.tensor([0, 1])).item() == pytest.approx((1.0 + 4.0) / 2)


def batch_identities(sampler, labels, epoch):
    return [collections.Counter(labels[i] for i in batch) for batch in sampler.batches(epoch)]


def test_identity_sampler_batches_hold_p_identities_of_n_images():
    # 12 identities: most with 5 images, one with 2 (drawn with replacement), one with 17
    labels = [pid for pid in range(10) for _ in range(5)] + [10, 10] + [11] * 17
    sampler = IdentitySampler(labels, instances=4, identities_per_batch=4, seed=3)
    assert sampler.short_identities == 1
    for epoch in range(3):
        batches = batch_identities(sampler, labels, epoch)
        assert len(batches) == sampler.steps > 0
        for counts in batches:
            assert len(counts) == 4 and set(counts.values()) == {4}
    assert len(sampler) == sampler.steps * 16
    # (epoch, index) pairs, so the epoch reaches persistent workers; resume: same epoch, same order
    sampler.epoch = 2
    first = list(sampler)
    assert {key[0] for key in first} == {2}
    again = IdentitySampler(labels, 4, 4, seed=3)
    again.epoch = 2
    assert list(again) == first
    assert sampler.batches(0) != sampler.batches(1)


def test_each_copy_of_a_repeated_image_is_augmented_anew():
    from reidgraft.data.loaders import sample_key, transformed

    labels = [0] + [pid for pid in range(1, 4) for _ in range(4)]  # identity 0 has one image
    sampler = IdentitySampler(labels, instances=4, identities_per_batch=2, seed=0)
    keys = [sample_key(key) for key in sampler]
    lone = [key for key in keys if key[1] == 0]
    assert [copy for _, _, copy in lone] == [0, 1, 2, 3]  # its 4 draws in one batch
    others = [key for key in keys if key[1] != 0]
    assert others and {copy for _, _, copy in others} == {0}  # images of full identities: once each

    def draw(image):  # stands for a random augmentation: it draws from the seeded RNGs
        return torch.rand(3)

    augmented = [transformed(draw, None, 7, *key) for key in lone]
    assert all(not torch.equal(augmented[0], other) for other in augmented[1:])
    assert torch.equal(transformed(draw, None, 7, *lone[1]), augmented[1])  # still reproducible


def test_identity_samplers_of_two_models_differ_but_take_the_same_steps():
    labels = [pid for pid in range(9) for _ in range(3 + pid)]
    one, two = IdentitySampler(labels, 4, 3, seed=0), IdentitySampler(labels, 4, 3, seed=1)
    assert one.steps == two.steps
    assert one.batches(0) != two.batches(0)


def test_identity_sampler_refuses_fewer_identities_than_a_batch():
    with pytest.raises(ValueError, match="the training set has 2 identities, fewer than a batch's 4"):
        IdentitySampler([0, 0, 1, 1], 2, 4, seed=0)


def test_identity_loaders_give_each_model_its_batches(splits):  # noqa: F811
    loaders = build_train_loaders(
        splits.train, count=2, seed=0, height=32, width=16, augment=["random_flip"], batch_size=8,
        sampler="identity", num_instances=2,
    )  # fmt: skip
    assert len(loaders[0]) == len(loaders[1])
    first = [pids.tolist() for _, pids, _, _ in loaders[0]]
    other = [pids.tolist() for _, pids, _, _ in loaders[1]]
    assert first != other
    for pids in first:
        assert sorted(collections.Counter(pids).values()) == [2, 2, 2, 2]


def test_unknown_transform_names_are_refused_before_any_data_is_read():
    with pytest.raises(
        ConfigError, match="unknown transform 'random_erasing' for re-ID; choose from random_flip"
    ):
        check_names(build_config(transforms=["random_flip", "random_erasing"]))
    with pytest.raises(ConfigError, match="unknown transform 'random_erase' for classification"):
        check_names(build_config(dataset="digits", arch="resnet20", transforms=["random_erase"]))


def test_random_pad_crop_shifts_the_picture_by_at_most_ten_pixels():
    from PIL import Image

    from reidgraft.data.loaders import reid_transforms, transformed

    train, _ = reid_transforms(64, 32, ["random_pad_crop"])
    white = Image.new("RGB", (32, 64), (255, 255, 255))
    shifts = set()
    for index in range(30):
        picture = transformed(train, white, 0, 0, index)[0]
        assert picture.shape == (64, 32)
        padded = picture < 0  # zero padding, below the mean after normalisation
        rows, columns = padded.all(dim=1).sum().item(), padded.all(dim=0).sum().item()
        assert rows <= 10 and columns <= 10 and padded.sum() == rows * 32 + columns * 64 - rows * columns
        shifts.add((rows, columns))
    assert len(shifts) > 5


def test_triplet_with_the_random_sampler_is_refused():
    with pytest.raises(ConfigError, match="loss triplet needs --sampler identity"):
        build_config(loss=["softmax", "triplet"])


def test_bnneck_trains_on_the_pre_neck_feature_and_evaluates_on_the_post_neck_one():
    model = build_reid_model("resnet18", 5, seed=0, bnneck=True, with_features=True)
    assert isinstance(model.classifier, BNNeckClassifier)
    assert model.classifier.linear.bias is None and not model.classifier.neck.bias.requires_grad
    images = torch.randn(6, 3, 64, 32)
    model.train()
    logits, features = model(images)
    assert logits.shape == (6, 5) and features.shape == (6, 512)
    model.eval()
    with torch.no_grad():
        evaluated = model(images)
        pre_neck = model.global_avgpool(model.featuremaps(images)).flatten(1)  # what torchreid returns
        expected = model.classifier.neck(pre_neck)  # eval-mode BN: running statistics
    torch.testing.assert_close(evaluated, expected)
    assert not torch.allclose(evaluated, pre_neck)
    # a model rebuilt from the config behaves the same (the eval switch is not in the state_dict)
    rebuilt = build_reid_model("resnet18", 5, bnneck=True)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(images), evaluated)


def test_bnneck_and_classifier_take_the_last_convolutions_alpha():
    """GRAFTING.md section 3: entries after the last scored tensor use its alpha."""
    own = build_reid_model("resnet18", 5, seed=0, bnneck=True).state_dict()
    other = build_reid_model("resnet18", 5, seed=1, bnneck=True).state_dict()
    blended, alphas = graft_state(own, other)
    last_conv = scored_keys(own)[-1]
    alpha = alphas[last_conv]
    for key in ("classifier.neck.weight", "classifier.neck.running_mean", "classifier.linear.weight"):
        torch.testing.assert_close(blended[key], alpha * own[key] + (1 - alpha) * other[key])
    assert blended["classifier.neck.num_batches_tracked"] == own["classifier.neck.num_batches_tracked"]


def test_last_stride_one_doubles_the_final_map():
    plain = build_reid_model("resnet18", 5)
    strided = build_reid_model("resnet18", 5, last_stride=1)
    images = torch.randn(1, 3, 64, 32)
    assert plain.featuremaps(images).shape[-2:] == (2, 1)
    assert strided.featuremaps(images).shape[-2:] == (4, 2)
    with pytest.raises(ConfigError, match="last_stride 1 needs a backbone with a ResNet-style last stage"):
        check_names(build_config(arch="mobilenetv2_x1_0", last_stride=1))


def epoch_rates(config, epochs):
    optimizer = build_optimizer(config, [nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(config, optimizer)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates, optimizer


def test_multistep_schedule_with_warm_up_by_epoch():
    config = build_config(
        scheduler="multistep", milestones=[3, 5], gamma=0.1, warmup_epochs=3, warmup_factor=0.1, epochs=6
    )
    rates, optimizer = epoch_rates(config, 6)
    assert rates == pytest.approx([0.1, 0.55, 1.0, 0.1, 0.1, 0.01])
    replayed = replay_schedule(config, optimizer, 4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(rates[4])
    assert replayed is not None


def test_the_market_recipe_follows_the_strong_baselines_published_schedule():
    # Luo et al. 2019: lr(t) = 3.5e-4 t / 10 for t <= 10, 3.5e-4 to t = 40, 3.5e-5 to 70, then 3.5e-6
    from reidgraft.config import load_yaml

    recipe = load_yaml("market1501_resnet50_bot")
    rates, _ = epoch_rates(build_config(recipe), 120)
    factors = [t / 10 if t <= 10 else 1 if t <= 40 else 0.1 if t <= 70 else 0.01 for t in range(1, 121)]
    paper = [3.5e-4 * factor for factor in factors]
    assert [rate * recipe["lr"] for rate in rates] == pytest.approx(paper)


def test_tiny_strong_run_trains_two_grafted_models_and_resumes_exactly(splits, tmp_path):  # noqa: F811
    strong = dict(
        loss=["softmax", "triplet"], sampler="identity", num_instances=2, bnneck=True, warmup_epochs=1,
        center_loss_weight=0.0005, transforms=["random_flip", "random_erase"], optimizer="adam", lr=3.5e-4,
        scheduler="multistep", milestones=[2], arch="resnet18", height=64, width=32,
    )  # fmt: skip
    straight = Trainer(tiny_config(**strong, epochs=3), splits, tmp_path / "straight", log=lambda line: None)
    final = straight.fit()
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert [row["model"] for row in final] == [0, 1]
    assert all(0 <= row["mAP"] <= 1 for row in final)
    assert len(metrics["epochs"][0]["alphas"]) == 2  # grafted
    assert all(loss > 0 for epoch in metrics["epochs"] for loss in epoch["loss"])
    assert metrics["epochs"][0]["lr"][1] == pytest.approx(3.5e-6)  # warm-up starts at 0.01 x lr

    # 2 epochs, then resumed to 3: the same models as the straight run (sampler, centers, graft)
    first = Trainer(tiny_config(**strong, epochs=2), splits, tmp_path / "resumed", log=lambda line: None)
    first.fit()
    payload = load_checkpoint(tmp_path / "resumed")
    assert all(center for center in payload["centers"])
    resumed = Trainer(tiny_config(**strong, epochs=3), splits, tmp_path / "resumed", log=lambda line: None)
    resumed.load_state(payload)
    resumed.fit()
    for a, b in zip(straight.members, resumed.members, strict=True):
        for key, value in a.model.state_dict().items():
            torch.testing.assert_close(b.model.state_dict()[key], value, rtol=0, atol=0)
        torch.testing.assert_close(b.center.centers, a.center.centers, rtol=0, atol=0)


def test_a_run_saved_before_these_settings_existed_counts_as_their_defaults():
    from reidgraft.engine.runs import config_sha256

    now = build_config().to_dict()
    before = {name: value for name, value in now.items() if name not in ("loss", "bnneck", "sampler")}
    assert config_sha256(before) == config_sha256(now)
    assert config_sha256(before) != config_sha256(build_config(bnneck=True).to_dict())
