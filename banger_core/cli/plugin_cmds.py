"""``banger plugins`` (list, install, uninstall, new) and ``banger config show``."""

from __future__ import annotations

import sys
from typing import Any

import click

from banger_core.cli.output import emit_json, table
from banger_core.errors import BangerError, NotFoundError


@click.group("plugins", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List plugins (name, distribution, version, status, hooks or why it failed); manage them."""
    if ctx.invoked_subcommand is None:
        _list(ctx.obj, as_json)


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_obj
def list_(obj: dict, as_json: bool) -> None:
    """List installed plugins with version and status; failures with their one-line reason."""
    _list(obj, as_json)


def _list(obj: dict, as_json: bool) -> None:
    infos = [i.as_dict() for i in _manager(obj).infos.values()]
    if as_json:
        emit_json(infos)
        return
    rows = [
        (
            i["name"],
            i["distribution"],
            i["version"],
            i["status"],
            i["error"]
            if i["status"] == "failed"
            else ", ".join(h.removeprefix("banger_") for h in i["hooks"]),
        )
        for i in infos
    ]
    table(rows, ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS/PROBLEM"])


def _manager(obj: dict) -> Any:
    pm = obj.get("pm")
    if pm is None:  # the CLI skipped plugin loading for a core command: load them now
        from banger_core.cli.main import _disabled_plugins
        from banger_core.plugins import get_plugin_manager

        pm = obj["pm"] = get_plugin_manager(disabled=_disabled_plugins())
    return pm


def _pip(*args: str) -> None:
    """Run pip in banger's own environment (the interpreter running this CLI)."""
    from banger_core import system

    result = system.run([sys.executable, "-m", "pip", *args], check=False, timeout=1800)
    if result.returncode != 0:
        tail = [
            line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()
        ][-1:] or ["no output"]
        raise BangerError(f"pip {args[0]} failed (exit {result.returncode}): {tail[0]}")


def _after_change(restart: bool) -> None:
    from banger_core.cli import startup_cache
    from banger_core.cli.context import daemon_running
    from banger_core.paths import Paths

    startup_cache.invalidate()
    paths = Paths.from_env()
    if not daemon_running(paths):
        return
    if restart:
        from banger_core.cli.daemon_cmds import restart_daemon

        restart_daemon(paths)
        click.echo("bangerd restarted with the new plugin set")
    else:
        click.echo(
            "bangerd is running with the old plugin set: restart it "
            "(banger plugins install --restart, or banger daemon stop && "
            "banger daemon start)"
        )


@plugins.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--editable", "-e", is_flag=True, help="install a local directory in place")
@click.option("--upgrade", "-U", is_flag=True, help="upgrade if already installed")
@click.option("--restart", is_flag=True, help="restart bangerd so it loads the plugins")
def install(targets: tuple[str, ...], editable: bool, upgrade: bool, restart: bool) -> None:
    """Install plugins (a PyPI NAME, a local PATH or a URL) into banger's environment."""
    from banger_core.plugins import get_plugin_manager

    before = {n: i.version for n, i in get_plugin_manager(load_entrypoints=True).infos.items()}
    args = ["install", "--disable-pip-version-check", "-q"]
    if upgrade:
        args.append("--upgrade")
    for target in targets:
        args += ["-e", target] if editable else [target]
    _pip(*args)
    # A fresh process loads the plugins as the next banger command will: this one
    # cannot see what pip just added (an editable install's import hook, for one).
    after = _plugin_statuses()
    changed = {n: a for n, a in after.items() if before.get(n) != a["version"]}
    if not changed:
        click.echo("installed, but no new banger plugin was found (no 'banger' entry point?)")
    for name, a in changed.items():
        status = a["status"] if a["status"] != "failed" else f"FAILED: {a['error']}"
        click.echo(f"plugin {name} {a['version']} ({a['distribution']}): {status}")
    _after_change(restart)


_STATUS_SCRIPT = """
import json
from banger_core.plugins import get_plugin_manager
infos = get_plugin_manager().infos
print(json.dumps({n: {"version": i.version, "distribution": i.distribution,
                      "status": i.status, "error": i.error} for n, i in infos.items()}))
"""


def _plugin_statuses() -> dict[str, dict[str, str]]:
    """Every plugin's version, distribution, status and error, loaded in a new process."""
    import json
    import sys

    from banger_core import system

    result = system.run([sys.executable, "-c", _STATUS_SCRIPT], timeout=120)
    data: dict[str, dict[str, str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


@plugins.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--restart", is_flag=True, help="restart bangerd so it drops the plugins")
def uninstall(names: tuple[str, ...], restart: bool) -> None:
    """Uninstall plugins by plugin name (or distribution name) from banger's environment."""
    from banger_core.plugins import get_plugin_manager

    infos = get_plugin_manager().infos
    dists = []
    for name in names:
        info = infos.get(name) or next((i for i in infos.values() if i.distribution == name), None)
        if info is None or info.distribution in ("", "?", "(in-process)"):
            known = ", ".join(sorted(infos)) or "none"
            raise NotFoundError(f"no installed plugin {name!r} (installed: {known})")
        dists.append(info.distribution)
    _pip("uninstall", "-y", "-q", *dists)
    for dist in dists:
        click.echo(f"uninstalled {dist}")
    _after_change(restart)


@plugins.command()
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="where to create banger-NAME/",
)
def new(name: str, parent: str) -> None:
    """Write a ready plugin distribution: pyproject, hooks, README, unit and e2e tests."""
    from pathlib import Path

    from banger_core.scaffold import write

    root = write(name, Path(parent))
    click.echo(f"created {root}")
    click.echo(f"  try it:  banger plugins install -e {root} --restart")
    click.echo(f"  test it: pip install -e '{root}[test]' && pytest {root}")


@click.group("config")
def config() -> None:
    """Inspect configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_obj
def config_show(obj: dict, as_json: bool) -> None:
    """Print the effective configuration and where each value came from."""
    from banger_core.config import load_settings
    from banger_core.plugins import Hooks

    settings = load_settings(Hooks(_manager(obj)).config_defaults())
    rows = settings.rows()
    if as_json:
        emit_json(rows)
        return
    table(
        [(f"{r['section']}.{r['key']}", repr(r["value"]), r["source"]) for r in rows],
        ["KEY", "VALUE", "SOURCE"],
    )
