import argparse
import dataclasses

import pytest

from reidgraft.config import (
    CONFIGS_DIR,
    GROUPS,
    ConfigError,
    TrainConfig,
    add_config_arguments,
    build_config,
    given_fields,
    load_yaml,
    recipe_for,
)
from reidgraft.data import DATASETS


def test_every_registered_recipe_loads_and_matches_its_dataset():
    for spec in DATASETS.values():
        assert spec.default_arch in spec.recipes
        for arch, name in [*spec.recipes.items(), *spec.strong.items()]:
            config = build_config(load_yaml(CONFIGS_DIR / name))
            assert config.models >= 1 and config.epochs >= 1
            assert (config.dataset, config.arch) == (spec.name, arch), name


def test_every_recipe_file_is_registered():
    registered = {
        name for spec in DATASETS.values() for name in [*spec.recipes.values(), *spec.strong.values()]
    }
    assert {path.name for path in CONFIGS_DIR.glob("*.yaml")} == registered


def test_recipe_choice_follows_dataset_and_arch():
    assert recipe_for("market1501", None).name == "market1501_resnet50.yaml"
    assert recipe_for("dukemtmcreid", "mobilenetv2_x1_0").name == "duke_mobilenetv2.yaml"
    assert recipe_for("market1501", "osnet_x1_0").name == "market1501_resnet50.yaml"
    assert recipe_for(None, None).name == "synthetic_quick.yaml"
    assert recipe_for("cifar100", None).name == "cifar100_mobilenetv2.yaml"
    assert recipe_for("digits", "resnet32").name == "digits_quick.yaml"


def test_an_unknown_dataset_has_no_recipe():
    with pytest.raises(
        ConfigError, match="unknown dataset 'market'; choose one of: market1501, dukemtmcreid"
    ):
        recipe_for("market", None)


def test_overrides_win_and_none_is_ignored():
    config = build_config({"epochs": 5, "lr": 0.1}, epochs=7, lr=None)
    assert (config.epochs, config.lr) == (7, 0.1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: 0\n", "epochs must be at least 1"),
        ("optimizer: rmsprop\n", "unknown optimizer 'rmsprop'; choose one of: amsgrad, adam, sgd"),
        ("batchsize: 8\n", "unknown field 'batchsize'"),
        ("epochs: ten\n", "epochs must be an integer"),
        ("graft: 3\n", "graft must be true or false"),
        ("- a\n- b\n", "must hold a mapping"),
        ("epochs: [\n", "not valid YAML"),
    ],
)
def test_bad_recipes_name_the_field(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_config(load_yaml(path))


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "nope.yaml")


def test_grafting_options_are_checked_with_the_engine_rules():
    with pytest.raises(ConfigError, match="unknown grafting criterion 'entropi'; choose one of: entropy"):
        build_config(criterion="entropi")
    with pytest.raises(ConfigError, match="A must lie in"):
        build_config(A=2.0)
    assert build_config(c=5.0).graft_options()["c"] == 5.0


def config_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser


def test_every_field_has_help_and_a_group():
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"].strip(), f.name
        assert f.metadata["group"] in GROUPS, f.name


def test_help_shows_groups_choices_and_defaults():
    text = config_parser().format_help()
    for group in GROUPS:
        assert f"\n{group}:\n" in text
    assert "--scheduler {step,multistep,cosine,constant}" in text
    assert "(default: step)" in " ".join(text.split())  # the help may wrap anywhere
    assert "(default: ./data or $REIDGRAFT_DATA)" in " ".join(text.split())


def test_given_fields_holds_only_the_flags_given():
    parser = config_parser()
    args = parser.parse_args(["--batch-size", "8", "--no-graft", "--A", "0.3", "--transforms", "random_flip"])
    assert given_fields(args) == {"batch_size": 8, "graft": False, "A": 0.3, "transforms": ["random_flip"]}
    assert given_fields(parser.parse_args([])) == {}


def test_a_flag_outside_its_choices_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        config_parser().parse_args(["--optimizer", "rmsprop"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'rmsprop'" in capsys.readouterr().err


def test_validate_takes_its_choices_from_the_metadata():
    with pytest.raises(ConfigError, match="unknown metric 'manhattan'; choose one of: euclidean, cosine"):
        build_config(metric="manhattan")
    for f in dataclasses.fields(TrainConfig):
        if "choices" in f.metadata:
            default = getattr(TrainConfig(), f.name)
            defaults = default if isinstance(default, list) else [default]
            assert set(defaults) <= set(f.metadata["choices"]), f.name
    with pytest.raises(ConfigError, match="unknown loss 'arcface'; choose one of: softmax, triplet"):
        build_config(loss=["softmax", "arcface"])


@pytest.mark.parametrize("name", ["lr", "momentum", "A", "kd_tau", "ring_timeout"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_numbers_are_refused_before_any_work(name, value):
    with pytest.raises(ConfigError, match=f"{name} must be a finite number, got {value}"):
        build_config(**{name: value})


def test_json_files_never_hold_nan(tmp_path):
    from reidgraft.files import atomic_write_json

    with pytest.raises(ValueError, match="would hold a value JSON cannot represent"):
        atomic_write_json(tmp_path / "report.json", {"ratio": float("nan")})
    assert not list(tmp_path.iterdir())
