"""Hooks added for the agent channel: ready checks; plugin subcommands of core groups."""

from __future__ import annotations

import click

from banger_core import ReadyCheck, hookimpl
from banger_core.plugins import Hooks, get_plugin_manager


class Ready:
    @hookimpl
    def banger_vm_ready_checks(self, vm, ctx):
        return [
            ReadyCheck(
                "waiting for thing", lambda timeout, cancelled: "fine", timeout=3.0, detail=vm
            )
        ]


def test_hook_banger_vm_ready_checks() -> None:
    hooks = Hooks(get_plugin_manager(load_entrypoints=False, extra=[("ready", Ready())]))
    [(plugin, check)] = hooks.vm_ready_checks("vm1", None)
    assert plugin == "ready" and check.name == "waiting for thing" and check.detail == "vm1"
    assert check.wait(check.timeout, lambda: False) == "fine"


@click.command("hello")
def _hello() -> None:
    """Say hello."""
    click.echo("hello from a vm subcommand")


@click.command("list")
def _clash() -> None:
    """Clashes with vm list."""


class Sub:
    @hookimpl
    def banger_cli_subcommands(self):
        return {"vm": [_hello, _clash], "nogroup": [_hello]}


def test_hook_banger_cli_subcommands(banger_cli) -> None:
    pm = get_plugin_manager(load_entrypoints=False, extra=[("sub", Sub())])
    result = banger_cli(["vm", "hello"], pm=pm)
    assert result.exit_code == 0
    assert "hello from a vm subcommand" in result.stdout
    assert "command 'vm list' clashes with banger core; not added" in result.stderr
    assert "command group 'nogroup' does not exist" in result.stderr
    # the core's own group is untouched: a CLI built without the plugin has no `vm hello`
    plain = banger_cli(["vm", "hello"], pm=get_plugin_manager(load_entrypoints=False))
    assert "No such command 'hello'" in plain.stderr
