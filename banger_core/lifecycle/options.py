"""Checking per-VM plugin options in ``vm.create`` and ``vm.set`` requests.

The CLI sends plugin options as ``params["options"] = {key: value}`` (keys
are option names with ``_`` for ``-``); a top-level key equal to an option's
key is accepted too (``{"scratch_size": "20G"}``), so older clients keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from banger_core.errors import ValidationError
from banger_core.vmoptions import DeclaredOption


def split(
    params: dict[str, Any], declared: list[DeclaredOption], core_keys: set[str], *, for_create: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate core parameters from plugin option values (by key).

    :raise ValidationError: an unknown option, or one not offered by this command.
    """
    by_key = {d.option.key: d for d in declared}
    core = dict(params)
    given = core.pop("options", None) or {}
    if not isinstance(given, dict):
        raise ValidationError(f"parameter 'options' {given!r} must be a JSON object")
    given = {str(k).replace("-", "_"): v for k, v in given.items()}
    for key in list(core):
        if key not in core_keys and key in by_key:
            given[key] = core.pop(key)
    command = "vm create" if for_create else "vm set"
    for key in given:
        d = by_key.get(key)
        if d is None:
            known = ", ".join(sorted(f"--{x.option.name}" for x in declared)) or "none"
            raise ValidationError(
                f"unknown VM option {key.replace('_', '-')!r} (plugins' options: {known})"
            )
        if not (d.option.on_create if for_create else d.option.on_set):
            raise ValidationError(
                f"--{d.option.name} (plugin {d.plugin}) cannot be given to {command}"
            )
    return core, given


def for_create(
    given: dict[str, Any], declared: list[DeclaredOption], settings: Any
) -> dict[str, dict[str, Any]]:
    """Every declared option's effective value for a new VM, checked."""
    out: dict[str, dict[str, Any]] = {}
    for d in declared:
        key = d.option.key
        config = _config(settings, d.plugin)
        if key in given:
            value = d.option.check(given[key], config, strict=True)
        else:
            value = d.option.effective_default(config)
            if value is not None and d.option.validator is not None:
                value = d.option.check(value, config)
        out.setdefault(d.plugin, {})[key] = value
    return out


def for_set(
    given: dict[str, Any],
    declared: list[DeclaredOption],
    current: Mapping[str, Mapping[str, Any]],
    settings: Any = None,
) -> dict[str, dict[str, Any]]:
    """The options a ``vm set`` changes, checked; unchanged values are dropped.

    :param current: each plugin's current values (defaults filled in).
    """
    out: dict[str, dict[str, Any]] = {}
    for d in declared:
        key = d.option.key
        if key not in given:
            continue
        value = d.option.check(given[key], _config(settings, d.plugin), strict=True)
        if current.get(d.plugin, {}).get(key) != value:
            out.setdefault(d.plugin, {})[key] = value
    return out


def defaults(declared: list[DeclaredOption], settings: Any) -> dict[str, dict[str, Any]]:
    """``{plugin: {key: default}}`` for filling in values a VM does not store."""
    out: dict[str, dict[str, Any]] = {}
    for d in declared:
        try:
            value = d.option.effective_default(_config(settings, d.plugin))
        except ValidationError:
            value = d.option.default
        out.setdefault(d.plugin, {})[d.option.key] = value
    return out


def _config(settings: Any, plugin: str) -> dict[str, Any]:
    try:
        return dict(settings.plugin(plugin)) if settings is not None else {}
    except Exception:
        return {}


def requires_stopped(
    changes: dict[str, dict[str, Any]], declared: list[DeclaredOption]
) -> list[str]:
    """Names (``--x``) of changed options that may change only while the VM is stopped."""
    by = {(d.plugin, d.option.key): d.option for d in declared}
    return [
        f"--{by[(p, k)].name}"
        for p, values in changes.items()
        for k in values
        if by[(p, k)].set_requires_stopped
    ]
