"""Optimizers and schedules: each schedule once, in closed form; warm-up; replay on resume."""

import pytest
import torch
from torch import nn

from reidgraft.config import build_config
from reidgraft.config.schema import SCHEDULERS
from reidgraft.engine.optim import (
    SCHEDULES,
    build_optimizer,
    build_scheduler,
    replay_schedule,
    schedule_factor,
)


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


def test_the_config_offers_exactly_the_schedules_there_are():
    assert tuple(SCHEDULES) == SCHEDULERS


@pytest.mark.parametrize(
    "settings, torch_scheduler",
    [
        ({"scheduler": "step", "step_size": 20}, lambda o: torch.optim.lr_scheduler.StepLR(o, 20, gamma=0.1)),
        (
            {"scheduler": "multistep", "milestones": [40, 70]},
            lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [40, 70], gamma=0.1),
        ),
        ({"scheduler": "cosine"}, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=90)),
        ({"scheduler": "constant"}, lambda o: torch.optim.lr_scheduler.StepLR(o, 1, gamma=1.0)),
    ],
)
def test_each_closed_form_schedule_takes_torchs_own_rates(settings, torch_scheduler):
    """One representation per schedule (its closed form); torch's schedulers compute the same rates
    step by step, equal up to rounding (their products accumulate in another order)."""
    config = build_config(epochs=90, gamma=0.1, **settings)
    ours, _ = epoch_rates(config, 90)
    optimizer = build_optimizer(config, [nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch_scheduler(optimizer)
    theirs = []
    for _ in range(90):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)


def test_an_unknown_schedule_is_refused_never_taken_for_step():
    config = build_config()
    config.scheduler = "linear"  # past the config's check, as a caller of the engine might
    with pytest.raises(ValueError, match="unknown scheduler 'linear'; choose one of: step, multistep"):
        schedule_factor(config, 0)
    with pytest.raises(ValueError, match="unknown scheduler 'linear'"):
        build_scheduler(config, build_optimizer(config, [nn.Parameter(torch.zeros(1))], lr=1.0))


@pytest.mark.parametrize(
    "settings",
    [
        {"scheduler": "cosine"},
        {"scheduler": "step", "step_size": 2, "gamma": 0.5},
        {"scheduler": "multistep", "milestones": [2, 4], "gamma": 0.1},
        {"scheduler": "constant"},
    ],
)
def test_a_stretched_schedule_takes_at_epoch_k_e_the_rate_of_epoch_e(settings):
    """single_long trains K x E epochs: its rates are the short run's, K times as long each."""
    from reidgraft.engine.optim import stretched_schedule

    short = build_config(epochs=5, eval_every=1, **settings)
    long = build_config(short.to_dict(), **stretched_schedule(short, 3))
    assert (long.epochs, long.eval_every) == (15, 3)
    (short_rates, _), (long_rates, _) = epoch_rates(short, 5), epoch_rates(long, 15)
    assert long_rates[::3] == pytest.approx(short_rates)
    assert long_rates == sorted(long_rates, reverse=True)
    drops = lambda rates: [e for e in range(1, len(rates)) if rates[e] != rates[e - 1]]  # noqa: E731
    if settings["scheduler"] == "cosine":  # the same curve sampled three times as finely
        assert drops(long_rates) == list(range(1, 15))
    else:  # a step lands at 3 x its epoch
        assert drops(long_rates) == [3 * e for e in drops(short_rates)]


def test_a_stretched_warm_up_reaches_the_full_rate_k_times_later():
    from reidgraft.engine.optim import stretched_schedule

    short = build_config(epochs=6, scheduler="constant", warmup_epochs=2, warmup_factor=0.1)
    long = build_config(short.to_dict(), **stretched_schedule(short, 2))
    ramp, _ = epoch_rates(long, 5)
    assert ramp[0] == epoch_rates(short, 1)[0][0] == pytest.approx(0.1)
    assert ramp == sorted(ramp) and ramp[2] < 1.0 and ramp[3] == ramp[4] == 1.0
