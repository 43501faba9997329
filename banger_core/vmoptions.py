"""Per-VM options that plugins declare for ``vm create`` and ``vm set``.

A plugin returns :class:`VMOption` items from ``banger_vm_options``; the CLI
turns each into a flag of ``vm create`` / ``vm set`` (shown in ``--help``),
sends only what the user gave, and the daemon checks and stores the values
with the VM. Plugins read them back with ``vm.plugin_options(<name>)``.

This module is imported by the CLI: keep it free of daemon-side imports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from banger_core.errors import ValidationError

TYPES = ("bool", "str", "int", "size", "list")
_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
_TYPE_ALIASES: dict[Any, str] = {bool: "bool", str: "str", int: "int", list: "list"}


@dataclass(frozen=True)
class VMOption:
    """One per-VM option a plugin declares.

    :param name: the flag without dashes (``"nat"`` gives ``--nat/--no-nat``,
        ``"disk-size"`` gives ``--disk-size``); lower case, digits and dashes.
        Unique across every plugin and the core's own flags.
    :param type: ``"bool"`` (a ``--x/--no-x`` switch), ``"str"``, ``"int"``,
        ``"size"`` (bytes; the user may write ``8G``, ``512M``) or ``"list"``
        (a list of strings; the flag may repeat). ``bool``, ``str``, ``int``
        and ``list`` (the Python types) are accepted too.
    :param default: the value a VM gets when the user gives none. For
        ``size`` a number of bytes or a size string.
    :param help: one line for ``--help``.
    :param config_key: take the default from this key of the plugin's
        ``[plugins.<name>]`` section instead (falls back to ``default``).
    :param on_create: offered by ``vm create``.
    :param on_set: offered by ``vm set`` (the plugin's ``banger_vm_set``
        gets the change in ``changes``).
    :param set_requires_stopped: ``vm set`` refuses the change while the VM runs.
    :param validator: ``fn(value) -> value`` or ``fn(value, config) -> value``
        (``config``: the plugin's ``[plugins.<name>]`` section) called by the
        daemon after the type check; raise :class:`~banger_core.errors.ValidationError`
        (one line naming the value and what is allowed) to refuse it. May
        return a normalised value.
    :param metavar: what ``--help`` shows for the value.
    """

    name: str
    type: Any = "str"
    default: Any = None
    help: str = ""
    config_key: str | None = None
    on_create: bool = True
    on_set: bool = True
    set_requires_stopped: bool = True
    validator: Callable[..., Any] | None = field(default=None, compare=False)
    metavar: str | None = None

    def __post_init__(self) -> None:
        kind = _TYPE_ALIASES.get(self.type, self.type)
        if kind not in TYPES:
            raise ValidationError(
                f"VM option {self.name!r}: type {self.type!r} is not one of {', '.join(TYPES)}"
            )
        object.__setattr__(self, "type", kind)
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValidationError(
                f"VM option name {self.name!r} must be lower case letters, "
                "digits and dashes (like 'disk-size')"
            )

    @property
    def key(self) -> str:
        """The name as a Python identifier / JSON key (``scratch_size``)."""
        return self.name.replace("-", "_")

    def effective_default(self, config: Mapping[str, Any] | None = None) -> Any:
        """The default, from the plugin's config when ``config_key`` names a key there."""
        value = self.default
        if self.config_key and config and self.config_key in config:
            value = config[self.config_key]
        if value is None:
            return [] if self.type == "list" else None
        return self.coerce(value)

    def coerce(self, value: Any, *, strict: bool = False) -> Any:
        """Type-check and convert ``value`` (from the config or the CLI); raise a one-line error.

        :param strict: a value from an RPC request, which is typed JSON: a bool
            option takes only ``true``/``false``, an int option only an integer,
            a list option only a list of strings (no ``"yes"``, ``"5"`` or a
            lone string). A size still takes a string such as ``"8G"``.
        """
        what = f"--{self.name}"
        if strict:
            self._check_json_type(value)
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in (
                "true",
                "yes",
                "on",
                "1",
                "false",
                "no",
                "off",
                "0",
            ):
                return value.lower() in ("true", "yes", "on", "1")
            raise ValidationError(
                f"{what} {value!r} is not allowed: use true or false "
                f"(--{self.name} / --no-{self.name})"
            )
        if self.type == "int":
            if isinstance(value, bool):
                raise ValidationError(f"{what} {value!r} is not allowed: use an integer")
            if isinstance(value, int):
                return value
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                return int(value)
            raise ValidationError(f"{what} {value!r} is not allowed: use an integer")
        if self.type == "size":
            from banger_core.units import parse_size

            if isinstance(value, int) and not isinstance(value, bool):
                return value  # bytes
            try:
                return parse_size(value, what, default_unit="G")
            except ValidationError as exc:
                raise ValidationError(f"{exc} (bytes, or a size like 8G or 512M)") from None
        if self.type == "list":
            if isinstance(value, str):
                value = [value]
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return list(value)
            raise ValidationError(f"{what} {value!r} is not allowed: use a list of strings")
        if not isinstance(value, str):
            raise ValidationError(f"{what} {value!r} is not allowed: use a string")
        return value

    def _check_json_type(self, value: Any) -> None:
        """Refuse a JSON value of the wrong type (strict :meth:`coerce`)."""
        what = f"--{self.name}"
        if self.type == "bool" and not isinstance(value, bool):
            raise ValidationError(f"{what} {value!r} is not allowed: use true or false (JSON)")
        if self.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValidationError(f"{what} {value!r} is not allowed: use an integer (JSON)")
        if self.type == "list" and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise ValidationError(f"{what} {value!r} is not allowed: use a list of strings (JSON)")
        if self.type == "size" and (isinstance(value, bool) or not isinstance(value, (int, str))):
            raise ValidationError(
                f"{what} {value!r} is not allowed: use an integer (bytes) or a string like '8G'"
            )
        if self.type == "str" and not isinstance(value, str):
            raise ValidationError(f"{what} {value!r} is not allowed: use a string (JSON)")

    def check(
        self, value: Any, config: Mapping[str, Any] | None = None, *, strict: bool = False
    ) -> Any:
        """:meth:`coerce` then the plugin's ``validator``; errors name the option.

        :param config: the declaring plugin's ``[plugins.<name>]`` section,
            passed to a validator that takes a second argument.
        :param strict: the value came over RPC (see :meth:`coerce`).
        """
        value = self.coerce(value, strict=strict)
        if self.validator is not None:
            try:
                if _takes_config(self.validator):
                    result = self.validator(value, dict(config or {}))
                else:
                    result = self.validator(value)
            except ValidationError as exc:
                message = str(exc)
                if f"--{self.name}" not in message:
                    message = f"--{self.name}: {message}"
                raise ValidationError(message) from None
            if result is not None:
                value = result
        return value

    def describe(self) -> dict[str, Any]:
        """JSON-able declaration (the CLI's cache; ``--help`` is built from it)."""
        default = self.default
        return {
            "name": self.name,
            "type": self.type,
            "default": default,
            "help": self.help,
            "config_key": self.config_key,
            "on_create": self.on_create,
            "on_set": self.on_set,
            "set_requires_stopped": self.set_requires_stopped,
            "metavar": self.metavar,
        }

    @classmethod
    def from_description(cls, data: Mapping[str, Any]) -> VMOption:
        """Rebuild a declaration from :meth:`describe` (no validator: the daemon validates)."""
        return cls(
            **{
                k: data[k]
                for k in (
                    "name",
                    "type",
                    "default",
                    "help",
                    "config_key",
                    "on_create",
                    "on_set",
                    "set_requires_stopped",
                    "metavar",
                )
                if k in data
            }
        )


@dataclass
class DeclaredOption:
    """A :class:`VMOption` and the plugin that declared it."""

    plugin: str
    option: VMOption


def index_options(declared: list[DeclaredOption]) -> dict[str, DeclaredOption]:
    """``{option key: declaration}`` for lookups by JSON key (``scratch_size``)."""
    return {d.option.key: d for d in declared}


def clash_problems(
    declared: list[DeclaredOption], reserved: Mapping[str, str]
) -> tuple[list[DeclaredOption], list[str]]:
    """Drop options whose name is taken by the core or an earlier plugin; say why.

    :param reserved: ``{option name: owner}`` already taken (the core's flags).
    :return: the options kept, and one line per option refused.
    """
    owners = dict(reserved)
    kept: list[DeclaredOption] = []
    problems: list[str] = []
    for d in declared:
        name = d.option.name
        if name in owners or f"no-{name}" in owners:
            problems.append(
                f"plugin {d.plugin!r}: VM option --{name} clashes with "
                f"{owners.get(name) or owners.get(f'no-{name}')}; not added"
            )
            continue
        owners[name] = f"plugin {d.plugin!r}"
        kept.append(d)
    return kept, problems


def _takes_config(fn: Callable[..., Any]) -> bool:
    """Whether a validator accepts ``(value, config)`` (older ones take ``value`` only)."""
    import inspect

    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
