"""Deprecated: banger's test harness is its own distribution, ``pytest-banger``.

Import :mod:`pytest_banger` instead (``pip install pytest-banger``; banger's
own ``make dev`` installs it). This alias keeps tests written against the
earlier documentation working: ``from banger_core.testing import fake_vm``
and ``import banger_core.testing.simhost`` (likewise ``fakes``, ``hostile_agent``, ``images``,
``internet``, ``kernels``, ``plugin``) give the very objects of
``pytest_banger`` and emit a :class:`DeprecationWarning` naming the new
import. No harness code lives here.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

NEW_PACKAGE = "pytest_banger"
#: The documented submodules that keep working under their old names.
SUBMODULES = frozenset(
    {"fakes", "hostile_agent", "images", "internet", "kernels", "plugin", "simhost"}
)
_NAMES = frozenset({"FakeContext", "FakeRunner", "cached_debian_image", "fake_context", "fake_vm"})

__all__ = sorted(_NAMES)


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated: banger's test harness moved to the pytest-banger "
        f"distribution; use {new} instead",
        DeprecationWarning,
        stacklevel=3,
    )


def _harness(module: str) -> ModuleType:
    """Import ``module`` of pytest_banger, or say which distribution is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != NEW_PACKAGE:
            raise
        raise ModuleNotFoundError(
            f"banger's test harness is the pytest-banger distribution: pip install pytest-banger "
            f"(needed for {__name__})",
            name=NEW_PACKAGE,
        ) from exc


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _warn(f"{__name__}.{name}", f"{NEW_PACKAGE}.{name}")
    return getattr(_harness(NEW_PACKAGE), name)


class _AliasLoader(importlib.abc.Loader):
    """Makes ``banger_core.testing.X`` the very module ``pytest_banger.X``."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns whatever sys.modules holds under the name.
        sys.modules[module.__name__] = _harness(self.target)


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Finds the deprecated submodule names of ``banger_core.testing``."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        prefix = f"{__name__}."
        sub = fullname[len(prefix) :] if fullname.startswith(prefix) else ""
        if sub not in SUBMODULES:
            return None
        _warn(fullname, f"{NEW_PACKAGE}.{sub}")
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(f"{NEW_PACKAGE}.{sub}"))


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())
