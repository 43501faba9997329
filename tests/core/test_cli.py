"""CLI behaviour: one-line errors, tracebacks only with --debug, plugin command clashes."""

from __future__ import annotations

import click

from banger_core import hookimpl
from banger_core.errors import ValidationError


class Commands:
    """A plugin adding commands that fail in different ways."""

    @hookimpl
    def banger_cli_commands(self):
        @click.command("bad-input")
        def bad_input():
            raise ValidationError("size '3Q' is not a size (use 512M, 4G, ...)")

        @click.command("crash")
        def crash():
            raise ZeroDivisionError("division by zero")

        @click.command("daemon")
        def fake_daemon():
            click.echo("hijacked")

        @click.command("greet")
        def greet():
            click.echo("from commands")

        return [bad_input, crash, fake_daemon, greet]


class Greeter:
    @hookimpl
    def banger_cli_commands(self):
        @click.command("greet")
        def greet():
            click.echo("from greeter")

        return [greet]


def test_user_error_is_one_line(banger_plugin_manager, banger_cli) -> None:
    result = banger_cli(["bad-input"], pm=banger_plugin_manager(("cmds", Commands())))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("banger: warning:")]
    assert lines == ["banger: error: size '3Q' is not a size (use 512M, 4G, ...)"]
    assert "Traceback" not in result.stderr


def test_traceback_only_with_debug(banger_plugin_manager, banger_cli) -> None:
    pm = banger_plugin_manager(("cmds", Commands()))
    result = banger_cli(["--debug", "bad-input"], pm=pm)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith(
        "banger: error: size '3Q' is not a size (use 512M, 4G, ...)"
    )


def test_internal_error_is_one_line_with_hint(banger_plugin_manager, banger_cli) -> None:
    pm = banger_plugin_manager(("cmds", Commands()))
    result = banger_cli(["crash"], pm=pm)
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("banger: warning:")]
    assert lines == [
        "banger: internal error: ZeroDivisionError: division by zero "
        "(run with --debug for a traceback)"
    ]
    debug = banger_cli(["--debug", "crash"], pm=pm)
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ZeroDivisionError" in debug.stderr


def test_usage_error(banger_cli, banger_plugin_manager) -> None:
    result = banger_cli(["no-such-command"], pm=banger_plugin_manager())
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.stderr


def test_plugin_command_clash_refused(banger_plugin_manager, banger_cli) -> None:
    pm = banger_plugin_manager(("cmds", Commands()), ("greeter", Greeter()))
    result = banger_cli(["daemon", "--help"], pm=pm)
    assert result.exit_code == 0
    assert "Manage bangerd" in result.stdout  # the core command was not replaced
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("banger: warning:")]
    assert (
        "banger: warning: plugin 'cmds': command 'daemon' clashes with banger core; not added"
    ) in warnings
    greet_clash = [w for w in warnings if "'greet'" in w]
    assert len(greet_clash) == 1
    assert "'cmds'" in greet_clash[0] and "'greeter'" in greet_clash[0]
    winner = (
        "commands" if greet_clash[0].startswith("banger: warning: plugin 'greeter'") else "greeter"
    )
    assert banger_cli(["greet"], pm=pm).stdout.strip() == f"from {winner}"


def test_building_twice_does_not_leak_commands(banger_plugin_manager, banger_cli) -> None:
    assert banger_cli(["greet"], pm=banger_plugin_manager(("greeter", Greeter()))).exit_code == 0
    result = banger_cli(["greet"], pm=banger_plugin_manager())
    assert result.exit_code == 2  # the previous run's plugin command is gone


def test_version_and_help(banger_cli, banger_plugin_manager) -> None:
    pm = banger_plugin_manager()
    assert banger_cli(["--version"], pm=pm).stdout.strip() == "banger, version 0.1.0"
    help_text = banger_cli(["--help"], pm=pm).stdout
    for command in ("daemon", "plugins", "config"):
        assert command in help_text


def test_debug_traceback_in_a_real_process(banger_home) -> None:
    banger_home.write_config('[vm]\ncpus = "x"\n')
    plain = banger_home.run("config", "show")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert len(plain.stderr.strip().splitlines()) == 1
    debug = banger_home.run("--debug", "config", "show")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("banger: error: ")
