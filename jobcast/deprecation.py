"""Names that moved: a package that replaced a module of the same name still answers for the
module's old names, with a DeprecationWarning saying where each lives now."""

from __future__ import annotations

import importlib
import sys
import warnings


def moved(package: str, name: str, homes: tuple[str, ...]) -> object:
    """`name` looked up on `package` (a module-level `__getattr__`), found in the first of `homes`
    that has it; AttributeError as usual when none does."""
    if not name.startswith("__"):
        for home in homes:
            module = importlib.import_module(home)
            if hasattr(module, name):
                warnings.warn(
                    f"{package}.{name} moved to {home}.{name}; the old name goes in the next minor release",
                    DeprecationWarning,
                    stacklevel=3,
                )
                value = getattr(module, name)
                # Once: `from package import name` asks for it twice (hasattr, then getattr).
                setattr(sys.modules[package], name, value)
                return value
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
