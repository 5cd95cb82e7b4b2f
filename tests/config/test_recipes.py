"""Recipes: shipped inside the package, resolved with their bases, named by file or by name."""

import json
from pathlib import Path

import pytest

from reidgraft.config import (
    RECIPES,
    ConfigError,
    build_config,
    find_recipe,
    load_yaml,
    recipe_for,
    shipped_recipes,
)
from reidgraft.data import DATASETS

BEFORE = Path(__file__).with_name("recipes_resolved_before_refactor.json")


def test_every_shipped_recipe_resolves_as_before_it_had_bases():
    """Each recipe, now a few lines over a base, gives exactly the config its full copy gave
    (written by the code before the recipes moved into the package; root left out: it depends
    on $REIDGRAFT_DATA). Recipes added since (cuhk01's) are not in the snapshot; fields added
    since hold their defaults in every old recipe."""
    before = json.loads(BEFORE.read_text())
    added_recipes = {"cuhk01_mobilenetv2", "cuhk01_resnet50", "folder_mobilenetv2", "folder_mobilenetv2_bot"}
    assert sorted(before) == sorted(set(shipped_recipes()) - added_recipes)
    added_fields = {
        "top_bin": "inclusive", "dml_weight": 1.0, "dml_temperature": 1.0, "papa_mode": "gradual",
        "papa_rate": 0.01, "papa_every": 10, "papa_every_epochs": 5, "ema": None, "split": None,
        "split_seed": 0, "parallel_models": "auto", "image_cache": "auto",
        "ema_warmup": "none", "papa_closes": None, "ema_grid": [], "test_scoring": "when_due",
    }  # fmt: skip
    for name, expected in before.items():
        resolved = build_config(load_yaml(name)).to_dict()
        resolved.pop("root")
        assert {key: resolved.pop(key) for key in added_fields} == added_fields, name
        # graft: true became population: graft (the former name is still read)
        assert resolved.pop("population") == {True: "graft", False: "none"}[expected.pop("graft")], name
        assert resolved == expected, name


def test_every_registered_recipe_loads_and_matches_its_dataset():
    for spec in DATASETS.values():
        assert spec.default_arch in spec.recipes
        for arch, name in [*spec.recipes.items(), *spec.strong.items()]:
            config = build_config(load_yaml(name))
            assert config.models >= 1 and config.epochs >= 1
            assert (config.dataset, config.arch) == (spec.name, arch), name


def test_every_shipped_recipe_is_registered():
    registered = {
        name.removesuffix(".yaml")
        for spec in DATASETS.values()
        for name in [*spec.recipes.values(), *spec.strong.values()]
    }
    assert set(shipped_recipes()) == registered


def test_recipes_are_package_data_and_short():
    assert Path(str(RECIPES)).is_relative_to(Path(__file__).parents[2] / "reidgraft")
    for name in shipped_recipes():
        if name not in ("synthetic_quick", "digits_quick", "synthetic_bot"):
            values = [
                line for line in (RECIPES / f"{name}.yaml").read_text().splitlines() if line[:1].isalpha()
            ]
            assert len(values) <= 5, name  # base, dataset, arch and at most two changes


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


def test_a_recipe_is_named_by_path_or_by_shipped_name(tmp_path, monkeypatch):
    assert load_yaml("market1501_resnet50_bot") == load_yaml("market1501_resnet50_bot.yaml")
    own = tmp_path / "market1501_resnet50_bot.yaml"  # a file of the same name wins where it exists
    own.write_text("dataset: digits\narch: resnet20\n")
    monkeypatch.chdir(tmp_path)
    assert find_recipe("market1501_resnet50_bot.yaml") == Path("market1501_resnet50_bot.yaml")
    assert load_yaml("market1501_resnet50_bot.yaml") == {"dataset": "digits", "arch": "resnet20"}
    with pytest.raises(ConfigError, match="config file not found: nope.yaml; give a YAML file or a shipped"):
        load_yaml("nope.yaml")


def test_a_recipe_overrides_its_base_and_bases_nest(tmp_path):
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases" / "root.yaml").write_text("epochs: 10\nlr: 0.1\nmodels: 3\n")
    (tmp_path / "bases" / "middle.yaml").write_text("base: root.yaml\nlr: 0.2\n")  # beside itself
    (tmp_path / "mine.yaml").write_text("base: bases/middle.yaml\nepochs: 2\ndiverse_lr: false\n")
    values = load_yaml(tmp_path / "mine.yaml")
    assert values == {"epochs": 2, "lr": 0.2, "models": 3, "lr_spread": "none"}
    config = build_config(values, models=2)
    assert (config.epochs, config.lr, config.models, config.lr_spread) == (2, 0.2, 2, "none")


def test_a_cycle_of_bases_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nepochs: 1\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nepochs: 2\n")
    with pytest.raises(ConfigError, match=r"cycle of bases: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_yaml(tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle of bases"):
        load_yaml(tmp_path / "self.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("base: missing.yaml\n", r"config file not found: .*missing\.yaml \(the base of .*mine\.yaml\)"),
        (
            "base: 3\n",
            r"base in .* must be the path of a .yaml file or a shipped recipe's name \(one of: .*\), got 3",
        ),
        ("base: other.txt\n", "must be the path of a .yaml file or a shipped recipe's name"),
        ("base: nosuchrecipe\n", r"one of: .*cuhk01_mobilenetv2.*got 'nosuchrecipe'"),
        ("base: recipes/cuhk01_mobilenetv2\n", "must be the path of a .yaml file or a shipped recipe's name"),
    ],
)
def test_a_bad_base_is_one_line(tmp_path, text, message):
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_yaml(tmp_path / "mine.yaml")


def test_a_base_may_be_a_shipped_recipes_name(tmp_path):
    shipped = load_yaml("cuhk01_mobilenetv2")
    for base in ("cuhk01_mobilenetv2", "cuhk01_mobilenetv2.yaml"):  # as --config takes it
        (tmp_path / "mine.yaml").write_text(f"base: {base}\nepochs: 30\n")
        assert load_yaml(tmp_path / "mine.yaml") == {**shipped, "epochs": 30}
    # a file beside the recipe wins over a shipped recipe of the same name
    (tmp_path / "cuhk01_mobilenetv2.yaml").write_text("epochs: 3\n")
    (tmp_path / "mine.yaml").write_text("base: cuhk01_mobilenetv2.yaml\nlr: 0.1\n")
    assert load_yaml(tmp_path / "mine.yaml") == {"epochs": 3, "lr": 0.1}
    # bases still nest through it, and a cycle is still refused
    (tmp_path / "outer.yaml").write_text("base: mine.yaml\nmodels: 2\n")
    assert load_yaml(tmp_path / "outer.yaml") == {"epochs": 3, "lr": 0.1, "models": 2}
    (tmp_path / "cuhk01_mobilenetv2.yaml").write_text("base: outer.yaml\n")
    with pytest.raises(ConfigError, match="cycle of bases"):
        load_yaml(tmp_path / "outer.yaml")


def test_a_base_with_a_bad_value_names_the_base(tmp_path):
    (tmp_path / "base.yaml").write_text("epochs: ten\n")
    (tmp_path / "mine.yaml").write_text("base: base.yaml\n")
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        load_yaml(tmp_path / "mine.yaml")
    (tmp_path / "base.yaml").write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown field 'epoch' in .*base\.yaml"):
        load_yaml(tmp_path / "mine.yaml")


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


ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefghi", "bcdefghij", strict=True)
)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    import resource

    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + ALIAS_BOMB + "arch: *j\n")
    assert recipe.stat().st_size < 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    status = Path("/proc/self/status").read_text()
    mapped = int(next(line for line in status.splitlines() if line.startswith("VmSize:")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mapped + 2**30, hard))
    try:  # within a memory cap: expanding it would need gigabytes
        with pytest.raises(ConfigError, match=r"bomb.yaml uses a YAML alias \(\*a at line 2\)") as error:
            load_yaml(recipe)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert "\n" not in str(error.value) and len(str(error.value)) < 300


def test_a_long_bad_value_is_cut_in_the_message(tmp_path):
    recipe = tmp_path / "long.yaml"
    recipe.write_text("arch: [" + ", ".join(["x" * 20] * 5000) + "]\n")
    with pytest.raises(ConfigError, match=r"arch must be a string, got \['x") as error:
        load_yaml(recipe)
    assert len(str(error.value)) < 200 and str(error.value).endswith("...")


@pytest.mark.parametrize(
    "text, message",
    [("output: [1, 2]\n", "output must be a string"), ("weights: 3\n", "weights must be a string")],
)
def test_fields_unset_by_default_are_type_checked(tmp_path, text, message):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_yaml(recipe)


def test_devices_may_be_one_number_and_channels_last_a_bool(tmp_path):
    recipe = tmp_path / "gpu.yaml"
    recipe.write_text("devices: 1\nchannels_last: true\n")
    assert load_yaml(recipe) == {"devices": "1", "channels_last": True}
