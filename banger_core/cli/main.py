"""The ``banger`` entry point: the command tree, plugin commands, error handling."""

from __future__ import annotations

import sys
from typing import Any

import click

import banger_core
from banger_core.errors import BangerError

CORE_COMMANDS = (
    ("banger_core.cli.daemon_cmds", "daemon"),
    ("banger_core.cli.plugin_cmds", "plugins"),
    ("banger_core.cli.plugin_cmds", "config"),
    ("banger_core.cli.vm_cmds", "vm"),
    ("banger_core.cli.image_cmds", "image"),
    ("banger_core.cli.doctor_cmds", "doctor"),
    ("banger_core.cli.fdpass", "fdpass"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show tracebacks for errors")
@click.version_option(banger_core.__version__, prog_name="banger")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """banger: disposable, persistent developer microVMs."""
    ctx.ensure_object(dict)["debug"] = debug


class NeedPlugins(Exception):
    """A cached placeholder of a plugin command was invoked: load the plugins and rerun."""


def _core_group() -> click.Group:
    import importlib

    group = click.Group(
        cli.name,
        callback=cli.callback,
        params=list(cli.params),
        help=cli.help,
        context_settings=cli.context_settings,
    )
    for module_name, attr in CORE_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        group.add_command(getattr(module, attr))
    return group


def _add_commands(group: click.Group, commands: list[tuple[str, Any]], problems: list[str]) -> None:
    owners = {name: "banger core" for name in group.commands}
    for plugin, command in commands:
        if command.name in owners:
            problems.append(
                f"plugin {plugin!r}: command {command.name!r} clashes with "
                f"{owners[command.name]}; not added"
            )
            continue
        owners[command.name] = f"plugin {plugin!r}"
        group.add_command(command)


def _placeholder(name: str, help_text: str) -> click.Command:
    def run(**_: Any) -> None:
        raise NeedPlugins(name)

    return click.Command(
        name,
        callback=run,
        help=help_text,
        short_help=help_text,
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


def build_cli(
    pm: Any = None, args: list[str] | None = None, *, use_cache: bool = True
) -> tuple[click.Group, dict]:
    """The command tree with core and plugin commands; refuses name clashes.

    Builds a fresh group every time (the module-level ``cli`` only supplies
    the options), so building twice in one process never mixes plugin sets.
    Without ``pm``, a core command is built from the start-up cache
    (:mod:`banger_core.cli.startup_cache`) without loading any plugin; a
    plugin's command, or a stale cache, loads them.

    :param pm: a plugin manager to use instead of loading entry points (tests).
    :param args: the command line, to tell a core command from a plugin's.
    """
    from banger_core.cli import startup_cache
    from banger_core.cli.extend import add_subcommands, add_vm_options

    group = _core_group()
    key = ""
    if pm is None and use_cache and startup_cache.enabled():
        key = startup_cache.fingerprint()
        data = startup_cache.load(key)
        if data is not None and not startup_cache.needs_plugins(list(args or []), data):
            try:
                return _from_cache(group, data, list(args or []))
            except Exception:  # a damaged cache entry: load the plugins instead
                group = _core_group()

    from banger_core.plugins import Hooks, failure_lines, get_plugin_manager

    if pm is None:
        pm = get_plugin_manager(disabled=_disabled_plugins())
    hooks = Hooks(pm)
    problems = failure_lines(pm)
    commands = hooks.cli_commands()
    subcommands = hooks.cli_subcommands()
    declared = hooks.vm_options()
    _add_commands(group, commands, problems)
    add_subcommands(group, subcommands, problems)
    add_vm_options(group, declared, problems)
    problems.extend(hooks.problems)
    if key:
        startup_cache.save(key, startup_cache.layout(commands, subcommands, declared, problems))
    return group, {
        "pm": pm,
        "hooks": hooks,
        "problems": problems,
        "vm_option_types": _option_types(declared),
    }


def _from_cache(group: click.Group, data: dict, args: list[str]) -> tuple[click.Group, dict]:
    """The command tree from the start-up cache: plugin commands as placeholders."""
    from banger_core.cli.extend import add_subcommands, add_vm_options

    problems = list(data.get("problems", []))
    _add_commands(
        group,
        [
            (v["plugin"], _placeholder(name, v.get("help", "")))
            for name, v in data.get("commands", {}).items()
        ],
        [],
    )
    add_subcommands(
        group,
        [
            (s["plugin"], s["group"], _placeholder(s["name"], s.get("help", "")))
            for s in data.get("subcommands", [])
        ],
        [],
    )
    declared: list[Any] = []
    if data.get("options") and _edits_vms(args):
        from banger_core.vmoptions import DeclaredOption, VMOption

        declared = [
            DeclaredOption(o["plugin"], VMOption.from_description(o))
            for o in data.get("options", [])
        ]
        add_vm_options(group, declared, [])
    return group, {
        "pm": None,
        "hooks": None,
        "problems": problems,
        "vm_option_types": _option_types(declared),
    }


def _edits_vms(args: list[str]) -> bool:
    """Whether the command is ``vm create``/``vm set``/``vm show`` (they need plugin options)."""
    words = [a for a in args if not a.startswith("-")]
    return words[:1] == ["vm"] and (len(words) < 2 or words[1] in ("create", "set", "show"))


def _option_types(declared: list[Any]) -> dict[str, str]:
    """``{"plugin.key": type}`` so ``vm show`` can format option values."""
    return {f"{d.plugin}.{d.option.key}": d.option.type for d in declared}


def _disabled_plugins() -> list[str]:
    from banger_core.config import load_settings

    try:
        return list(load_settings().get("plugins", "disabled"))
    except BangerError:
        return []


def main(argv: list[str] | None = None, *, pm: Any = None) -> int:
    """Run the CLI; errors are one line on stderr, tracebacks only with --debug.

    :param pm: a plugin manager to use instead of loading entry points (tests).
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        group, obj = build_cli(pm, args)
        for line in obj["problems"]:
            click.echo(f"banger: warning: {line}", err=True)
        try:
            group.main(args=args, prog_name="banger", obj=obj, standalone_mode=False)
        except NeedPlugins:
            # The cache said "core command" but a plugin's command was asked for.
            group, obj = build_cli(pm, args, use_cache=False)
            group.main(args=args, prog_name="banger", obj=obj, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("banger: aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        click.echo("banger: interrupted", err=True)
        return 130
    except BangerError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"banger: error: {exc}", err=True)
        return 1
    except OSError as exc:  # the CLI's own files and directories: say which and why
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"banger: error: {_os_error(exc)}", err=True)
        return 1
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        else:
            click.echo(
                f"banger: internal error: {type(exc).__name__}: {exc} "
                "(run with --debug for a traceback)",
                err=True,
            )
        return 1
    return 0


def _os_error(exc: OSError) -> str:
    """One line for a file-system error: what failed, on which path."""
    what = exc.strerror or type(exc).__name__
    if exc.filename is None:
        return f"{what} ({exc})" if str(exc) != what else what
    where = str(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    return f"{where}: {what}"


if __name__ == "__main__":
    sys.exit(main())
