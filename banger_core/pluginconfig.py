"""Declared configuration keys: what a key holds, its default and meaning.

Both the core's own sections and each plugin's ``[plugins.<name>]`` section
are declared with :class:`Option`, so one validator reports unknown keys and
wrong types for all of them.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    """One configuration key.

    :param default: the value used when no file sets the key.
    :param description: one line for ``banger config show`` and the docs.
    :param type: the accepted Python type; derived from ``default`` if omitted.
    :param choices: when given, the only allowed values.
    """

    default: Any
    description: str = ""
    type: builtins.type | tuple[builtins.type, ...] | None = None
    choices: tuple[Any, ...] = field(default_factory=tuple)

    @property
    def accepted(self) -> tuple[builtins.type, ...]:
        """The types a value of this key may have."""
        if self.type is not None:
            return self.type if isinstance(self.type, tuple) else (self.type,)
        if isinstance(self.default, bool):
            return (bool,)
        if isinstance(self.default, int):
            return (int,)
        if isinstance(self.default, float):
            return (int, float)
        if self.default is None:
            return (object,)
        return (builtins.type(self.default),)

    def type_name(self) -> str:
        """Human name of the accepted types, for error messages."""
        names: dict[builtins.type, str] = {
            bool: "boolean",
            int: "integer",
            float: "number",
            str: "string",
            list: "list",
            dict: "table",
            object: "any value",
        }
        return " or ".join(names.get(t) or t.__name__ for t in self.accepted)

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not acceptable, or None when it is."""
        accepted = self.accepted
        if bool not in accepted and isinstance(value, bool) and object not in accepted:
            return f"expected {self.type_name()}, got boolean"
        if not isinstance(value, accepted):
            return f"expected {self.type_name()}, got {type(value).__name__}"
        if self.choices and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            return f"{value!r} is not one of {allowed}"
        return None
