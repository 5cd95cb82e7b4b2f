import pytest

from reidgraft.config import RECIPES, ConfigError, build_config, load_yaml, recipe_for


def test_recipes_load_and_validate():
    for name in (*RECIPES.values(), "synthetic_quick.yaml"):
        path = recipe_for("market1501", "resnet50").parent / name
        config = build_config(load_yaml(path))
        assert config.models >= 1 and config.epochs >= 1


def test_recipe_choice_follows_dataset_and_arch():
    assert recipe_for("market1501", None).name == "market1501_resnet50.yaml"
    assert recipe_for("dukemtmcreid", "mobilenetv2_x1_0").name == "duke_mobilenetv2.yaml"
    assert recipe_for("market1501", "osnet_x1_0").name == "market1501_resnet50.yaml"
    assert recipe_for(None, None).name == "synthetic_quick.yaml"


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
