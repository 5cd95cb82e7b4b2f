"""A package's public names loaded from their module on first use (PEP 562), so that importing
one module of a package does not load the rest, nor torch, torchvision and torchreid behind it.
(`grafting/` and `population/` keep their own copy, as they import nothing of ours but the
method, and so does the root package, which every import of a part loads.)"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose public name N lives in `exports[N]`: one
    of its modules ("registry") or a dotted module path ("reidgraft.extractor")."""
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        source = exports[name]
        value = getattr(importlib.import_module(source if "." in source else f"{package}.{source}"), name)
        setattr(module, name, value)  # found once
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports))

    return __getattr__, __dir__
