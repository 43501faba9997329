"""Plugins extending the core's command groups: subcommands and per-VM option flags.

The core's groups are module-level objects, so every change here works on
copies: building the command tree twice in one process (tests) never mixes
two plugin sets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from banger_core.vmoptions import DeclaredOption

META_KEY = "banger.vm_options"


def _copy_group(group: click.Group) -> click.Group:
    clone = copy.copy(group)
    clone.commands = dict(group.commands)
    return clone


def _find_path(root: click.Group, path: str) -> list[click.Group] | None:
    """The chain of groups from ``root`` to ``path`` (``"vm"``, ``"image"``)."""
    chain = [root]
    for part in path.replace(".", " ").split():
        nxt = chain[-1].commands.get(part)
        if not isinstance(nxt, click.Group):
            return None
        chain.append(nxt)
    return chain if len(chain) > 1 else None


def _replace_chain(chain: list[click.Group]) -> click.Group:
    """Copy every group below the root along ``chain``; return the copied leaf."""
    parent = chain[0]
    for group in chain[1:]:
        clone = _copy_group(group)
        parent.commands[clone.name or ""] = clone
        parent = clone
    return parent


def add_subcommands(
    root: click.Group, subcommands: list[tuple[str, str, Any]], problems: list[str]
) -> None:
    """Add plugins' ``(plugin, group path, command)`` under core groups; refuse clashes."""
    owners: dict[tuple[str, str], str] = {}
    copied: dict[str, click.Group] = {}
    for plugin, path, command in subcommands:
        if not isinstance(command, click.Command) or not command.name:
            problems.append(
                f"plugin {plugin!r}: {command!r} under {path!r} is not a named "
                "click command; not added"
            )
            continue
        key = " ".join(path.replace(".", " ").split())
        group = copied.get(key)
        if group is None:
            chain = _find_path(root, key)
            if chain is None:
                problems.append(
                    f"plugin {plugin!r}: command group {path!r} does not exist; "
                    f"{command.name!r} not added"
                )
                continue
            group = copied[key] = _replace_chain(chain)
        if command.name in group.commands:
            owner = owners.get((key, command.name), "banger core")
            problems.append(
                f"plugin {plugin!r}: command '{key} {command.name}' clashes with {owner}; not added"
            )
            continue
        owners[(key, command.name)] = f"plugin {plugin!r}"
        group.commands[command.name] = command


def _reserved(*commands: click.Command) -> dict[str, str]:
    names: dict[str, str] = {}
    for command in commands:
        for param in command.params:
            for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                names[opt.lstrip("-")] = "banger core"
            if param.name:
                names[param.name.replace("_", "-")] = "banger core"
    return names


def click_param(d: DeclaredOption) -> click.Option:
    """The flag a declared option becomes (its value is None when not given)."""
    opt = d.option
    default = opt.default
    shown = "" if default in (None, [], ()) else str(default)
    if opt.config_key:
        shown = f"{shown or 'none'}, or [plugins.{d.plugin}] {opt.config_key}"
    help_text = f"{opt.help}  ({d.plugin})" + (f"  [default: {shown}]" if shown else "")
    dest = f"banger_opt_{opt.key}"
    if opt.type == "bool":
        return click.Option([f"--{opt.name}/--no-{opt.name}", dest], default=None, help=help_text)
    if opt.type == "list":
        return click.Option(
            [f"--{opt.name}", dest],
            multiple=True,
            default=(),
            metavar=opt.metavar or "VALUE",
            help=help_text + "  (repeatable)",
        )
    metavar = opt.metavar or {"int": "N", "size": "SIZE"}.get(opt.type, "TEXT")
    # Sent as typed JSON: the daemon takes only an integer for an int option.
    kind = click.INT if opt.type == "int" else None
    return click.Option(
        [f"--{opt.name}", dest], type=kind, default=None, metavar=metavar, help=help_text
    )


def _with_options(command: click.Command, declared: list[DeclaredOption]) -> click.Command:
    clone = copy.copy(command)
    clone.params = [*command.params, *(click_param(d) for d in declared)]
    original: Callable[..., Any] | None = command.callback
    keys = {f"banger_opt_{d.option.key}": d.option.key for d in declared}

    def callback(**kwargs: Any) -> Any:
        given: dict[str, Any] = {}
        for dest, key in keys.items():
            value = kwargs.pop(dest, None)
            if value is None or (isinstance(value, tuple) and not value):
                continue
            given[key] = list(value) if isinstance(value, tuple) else value
        click.get_current_context().meta[META_KEY] = given
        assert original is not None
        return original(**kwargs)

    clone.callback = callback
    return clone


def given_options() -> dict[str, Any]:
    """Plugin option values the user gave to this ``vm create`` / ``vm set`` (by key)."""
    ctx = click.get_current_context(silent=True)
    return dict(ctx.meta.get(META_KEY, {})) if ctx is not None else {}


def add_vm_options(root: click.Group, declared: list[DeclaredOption], problems: list[str]) -> None:
    """Add plugins' per-VM options to ``vm create`` and ``vm set``; refuse clashes."""
    if not declared:
        return
    from banger_core.vmoptions import clash_problems

    chain = _find_path(root, "vm")
    if chain is None:
        return
    vm = chain[-1]
    create, set_ = vm.commands.get("create"), vm.commands.get("set")
    if create is None or set_ is None:
        return
    kept, refused = clash_problems(declared, _reserved(create, set_))
    problems.extend(refused)
    if not kept:
        return
    vm = _replace_chain(chain)
    vm.commands["create"] = _with_options(create, [d for d in kept if d.option.on_create])
    vm.commands["set"] = _with_options(set_, [d for d in kept if d.option.on_set])
