"""The training configuration: its schema (`schema.py`, every field with its metadata), the
checks of its values (`checks.py`), its flags (`arguments.py`) and the recipes it is resolved
from (`recipes.py`): defaults, then a recipe with its bases, then flags."""

from .arguments import add_config_arguments, given_fields
from .checks import check_config, check_method_settings, check_task_fields
from .recipes import (
    RECIPES,
    build_config,
    checked_value,
    current_names,
    find_recipe,
    load_yaml,
    load_yaml_text,
    recipe_for,
    shipped_recipe,
    shipped_recipes,
)
from .schema import (
    AMP_CHOICES,
    DEVICES,
    FIELDS,
    GROUPS,
    LOSSES,
    RENAMED,
    ConfigError,
    TrainConfig,
    default_data_root,
    field_names,
    identity_fields,
    resumable_fields,
    runtime_fields,
)

__all__ = [
    "AMP_CHOICES",
    "DEVICES",
    "FIELDS",
    "GROUPS",
    "LOSSES",
    "RECIPES",
    "RENAMED",
    "ConfigError",
    "TrainConfig",
    "add_config_arguments",
    "build_config",
    "check_config",
    "check_method_settings",
    "checked_value",
    "current_names",
    "load_yaml_text",
    "check_task_fields",
    "default_data_root",
    "field_names",
    "find_recipe",
    "given_fields",
    "identity_fields",
    "load_yaml",
    "recipe_for",
    "resumable_fields",
    "runtime_fields",
    "shipped_recipe",
    "shipped_recipes",
]
