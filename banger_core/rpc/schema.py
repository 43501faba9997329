"""Declared parameter schemas for RPC methods (standard library only).

A handler declares what its ``params`` may contain::

    from banger_core import rpc_params, Field

    @rpc_params(ref=Field.str(required=True), force=Field.bool())
    def stop(params, call): ...

The server checks every request against the schema before calling the
handler: unknown fields are refused, every field's type and bounds are
checked, and the error is one line naming the field and what is allowed
(code ``invalid``). Fields left out get their declared default (when it is
not ``None``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from banger_core.errors import ValidationError

MAX_STR = 4096
MAX_INT = (1 << 63) - 1
F = TypeVar("F", bound=Callable[..., Any])
_str = str  # Field's constructors shadow these names inside the class
_int = int
_list = list
_bool = bool


@dataclass(frozen=True)
class Field:
    """One parameter: its kind, bounds, and whether it must be given."""

    kind: _str  # int | str | bool | list | enum | size | any
    required: _bool = False
    default: Any = None
    min: _int | None = None
    max: _int | None = None
    choices: tuple[Any, ...] = ()
    item: Field | None = None  # list items
    nullable: _bool = False

    # -- constructors ------------------------------------------------------
    @classmethod
    def int(
        cls,
        *,
        required: _bool = False,
        default: Any = None,
        min: _int | None = None,
        max: _int | None = None,
        nullable: _bool = False,
    ) -> Field:
        """An integer (booleans are not integers here) within ``[min, max]``."""
        return cls("int", required, default, min, max, nullable=nullable)

    @classmethod
    def str(
        cls,
        *,
        required: _bool = False,
        default: Any = None,
        min: _int = 0,
        max: _int = MAX_STR,
        nullable: _bool = False,
    ) -> Field:
        """A string of ``min``..``max`` characters (``required`` implies non-empty)."""
        lo = 1 if required and min < 1 else min
        return cls("str", required, default, lo, max, nullable=nullable)

    @classmethod
    def bool(cls, *, required: _bool = False, default: Any = None) -> Field:
        """``true`` or ``false``."""
        return cls("bool", required, default)

    @classmethod
    def enum(cls, *choices: Any, required: _bool = False, default: Any = None) -> Field:
        """One of ``choices``."""
        return cls("enum", required, default, choices=tuple(choices))

    @classmethod
    def list(cls, item: Field, *, required: _bool = False, max: _int = 1024) -> Field:
        """A list of at most ``max`` items, each checked against ``item``."""
        return cls("list", required, None, 0, max, item=item)

    @classmethod
    def size(cls, *, required: _bool = False, default: Any = None) -> Field:
        """A size: a non-negative integer or a short string such as ``"8G"`` (checked later)."""
        return cls("size", required, default, 0, MAX_INT)

    @classmethod
    def any(cls, *, required: _bool = False) -> Field:
        """Anything JSON can carry (the handler checks it)."""
        return cls("any", required)

    # -- checking ----------------------------------------------------------
    def describe(self) -> _str:
        """What is allowed, in words."""
        if self.kind == "int":
            lo = "" if self.min is None else f" >= {self.min}"
            hi = "" if self.max is None else f" <= {self.max}"
            return f"an integer{lo}{' and' if lo and hi else ''}{hi}"
        if self.kind == "str":
            return (
                f"a string of {self.min} to {self.max} characters"
                if self.min
                else f"a string of at most {self.max} characters"
            )
        if self.kind == "bool":
            return "true or false"
        if self.kind == "enum":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "list":
            assert self.item is not None
            return f"a list of at most {self.max} items, each {self.item.describe()}"
        if self.kind == "size":
            return "a size: a non-negative integer or a string like '8G'"
        return "any value"

    def check(self, name: _str, value: Any) -> Any:
        """Return ``value`` when it fits; raise :class:`ValidationError` otherwise."""
        if value is None and self.nullable:
            return None
        if not self._fits(value):
            shown = repr(value)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            raise ValidationError(
                f"parameter {name!r}: {shown} is not allowed; use {self.describe()}"
            )
        if self.kind == "list":
            assert self.item is not None
            return [self.item.check(f"{name}[{i}]", v) for i, v in enumerate(value)]
        return value

    def _fits(self, value: Any) -> _bool:
        kind = self.kind
        if kind == "any":
            return True
        if kind == "int" or (kind == "size" and not isinstance(value, _str)):
            if isinstance(value, bool) or not isinstance(value, _int):
                return False
            lo = self.min if self.min is not None else -MAX_INT
            hi = self.max if self.max is not None else MAX_INT
            return lo <= value <= hi
        if kind in ("str", "size"):
            if not isinstance(value, _str):
                return False
            limit = (self.max if self.max is not None else MAX_STR) if kind == "str" else 512
            return (self.min or 0) <= len(value) <= limit
        if kind == "bool":
            return isinstance(value, bool)
        if kind == "enum":
            return isinstance(value, (_str, _int)) and value in self.choices
        if kind == "list":
            return isinstance(value, _list) and len(value) <= (self.max or 0)
        return False


@dataclass(frozen=True)
class Schema:
    """The fields a method takes."""

    fields: dict[str, Field]

    def validate(self, method: str, params: Any) -> dict[str, Any]:
        """Checked params (defaults filled in) or a one-line :class:`ValidationError`."""
        if not isinstance(params, dict):
            raise ValidationError(f"params of {method} must be a JSON object")
        unknown = sorted(k for k in params if k not in self.fields)
        if unknown:
            allowed = ", ".join(sorted(self.fields)) or "none"
            bad = ", ".join(repr(k if len(k) <= 40 else k[:37] + "...") for k in unknown[:3])
            raise ValidationError(f"{method}: unknown parameter(s) {bad} (allowed: {allowed})")
        out: dict[str, Any] = {}
        for name, spec in self.fields.items():
            if name not in params:
                if spec.required:
                    raise ValidationError(
                        f"{method}: parameter {name!r} is required ({spec.describe()})"
                    )
                if spec.default is not None:
                    out[name] = spec.default
                continue
            try:
                out[name] = spec.check(name, params[name])
            except ValidationError as exc:
                raise ValidationError(f"{method}: {exc}") from None
        return out


def rpc_params(**fields: Field) -> Callable[[F], F]:
    """Declare a handler's parameters; the server validates requests against them."""
    schema = Schema(dict(fields))

    def mark(handler: F) -> F:
        handler.__rpc_params__ = schema  # type: ignore[attr-defined]
        return handler

    return mark


def schema_of(handler: Any) -> Schema | None:
    """The schema a handler declared with :func:`rpc_params`, if any."""
    schema = getattr(handler, "__rpc_params__", None)
    return schema if isinstance(schema, Schema) else None


def with_params(handler: Callable[..., Any], **fields: Field) -> Callable[..., Any]:
    """Attach a schema to a handler that cannot be decorated (a lambda, a bound method)."""
    try:
        return rpc_params(**fields)(handler)
    except AttributeError:  # bound methods take no attributes: wrap them
        if inspect.iscoroutinefunction(handler):

            async def async_wrapper(params: Any, call: Any) -> Any:
                return await handler(params, call)

            return rpc_params(**fields)(functools.update_wrapper(async_wrapper, handler))

        def wrapper(params: Any, call: Any) -> Any:
            return handler(params, call)

        return rpc_params(**fields)(functools.update_wrapper(wrapper, handler))


def names(fields: Sequence[str], field: Field) -> dict[str, Field]:
    """The same field under several names."""
    return {name: field for name in fields}
