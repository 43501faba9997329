"""Checking what a plugin's hook returned against the hookspec's declared return type.

The :class:`~banger_core.plugins.Hooks` facade passes every result through
:func:`conform` (the one place results are checked): a result of the wrong
shape is replaced by "nothing from this plugin", a list or mapping keeps
only its items of the declared type, and every problem becomes one line
naming what was wrong. ``None`` always means "nothing" (pluggy drops it), so
a hook that returns nothing never counts as wrong.

The declared type is read from the hookspec's return annotation, evaluated
lazily (a hook's annotation is resolved the first time that hook is
called), with the names plugins import from :mod:`banger_core`.
"""

from __future__ import annotations

import collections.abc
import functools
import importlib
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from banger_core import hookspecs


class _Names(dict[str, Any]):
    """Names a return annotation may use: hookspecs' globals, then banger_core's public API."""

    def __missing__(self, name: str) -> Any:
        import banger_core

        if name == "click":
            return importlib.import_module("click")
        try:
            return getattr(banger_core, name)
        except AttributeError:
            raise KeyError(name) from None


@functools.cache
def declared_return(hook_name: str) -> Any:
    """The return type the hookspec ``hook_name`` declares (a typing expression)."""
    spec = getattr(hookspecs, hook_name)
    annotation = spec.__annotations__.get("return", Any)
    if not isinstance(annotation, str):
        return annotation
    return eval(annotation, dict(vars(hookspecs)), _Names())


def type_name(tp: Any) -> str:
    """``list[click.Command]``, ``dict[str, Option]``: a declared type as the docs write it."""
    if tp is None or tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is collections.abc.Callable:
        return "callable"
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(tp, type):
        module = tp.__module__
        if module.startswith("click"):
            return f"click.{tp.__name__}"
        return tp.__name__
    return str(tp)


def _short(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` is of ``tp`` (deeply, for the shapes hookspecs use)."""
    return not _check(value, tp, "")[1]


def _check(value: Any, tp: Any, where: str) -> tuple[Any, list[str]]:
    """``(kept value, problems)``: ``value`` checked against ``tp``; bad items dropped."""
    if tp is Any or tp is object:
        return value, []
    if tp is None or tp is type(None):
        if value is None:
            return None, []
        return None, [f"{where}returned {_short(value)}, expected None; ignored"]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        for option in args:
            if _matches(value, option):
                return value, []
        return None, [f"{where}{_short(value)} is not {type_name(tp)}; ignored"]
    if origin is collections.abc.Callable:
        if callable(value):
            return value, []
        return None, [f"{where}{_short(value)} is not callable; ignored"]
    if origin in (list, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return None, [f"{where}{_short(value)} is not {type_name(tp)}; ignored"]
        item_type = args[0] if args else Any
        kept, problems = [], []
        for index, item in enumerate(value):
            good, bad = _check(item, item_type, "")
            if bad:
                problems.append(
                    f"{where}item {index}: {_short(item)} is not {type_name(item_type)}; skipped"
                )
            else:
                kept.append(good)
        return kept, problems
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            return None, [f"{where}{_short(value)} is not {type_name(tp)}; ignored"]
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        out, problems = {}, []
        for key, item in value.items():
            if not _matches(key, key_type):
                problems.append(f"{where}key {_short(key)} is not {type_name(key_type)}; skipped")
                continue
            good, bad = _check(item, value_type, "")
            if bad:
                problems.append(
                    f"{where}{key!r}: {_short(item)} is not {type_name(value_type)}; skipped"
                )
            else:
                out[key] = good
        return out, problems
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value, []
        return None, [f"{where}{_short(value)} is not {type_name(tp)}; ignored"]
    return value, []  # a type this checker does not know: trust it


def conform(hook_name: str, result: Any) -> tuple[Any, list[str]]:
    """``(result, problems)``: a plugin's result of ``hook_name`` reduced to what is declared.

    ``None`` passes unchanged. A result of the wrong shape becomes ``None``
    (nothing from this plugin); a list or mapping keeps only its items of the
    declared type. Each problem is a phrase (``"returned 'x' (str), expected
    list[click.Command]; ignored"``) the caller prefixes with the plugin and
    the hook.
    """
    if result is None:
        return None, []
    expected = declared_return(hook_name)
    kept, problems = _check(result, expected, "")
    if problems and kept is None:
        problems = [f"returned {_short(result)}, expected {type_name(expected)}; ignored"]
    return kept, problems
