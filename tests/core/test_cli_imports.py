"""The CLI process stays light: after a real round trip to a running daemon it has
not imported peewee, pyroute2, loguru, the store, the daemon or plugin daemon-side code."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from .conftest import EXAMPLE_DIR

FORBIDDEN_PREFIXES = (
    "peewee",
    "playhouse",
    "pyroute2",
    "loguru",
    "fabric",
    "paramiko",
    "banger_core.store",
    "banger_core.daemon",
    "banger_core.services",
    "banger_core.lifecycle.manager",
    "banger_hello.daemon",
)

SCRIPT = """
import json, sys
from banger_core.cli.main import main
code = main(sys.argv[1:])
sys.stdout.flush()
print("\\n@@" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def run_cli_and_list_modules(home, *args: str) -> tuple[int, str, list[str]]:
    result = home.run_argv([sys.executable, "-c", SCRIPT, *args])
    out, _, tail = result.stdout.rpartition("\n@@")
    assert tail, f"script did not finish: {result.stderr}"
    report = json.loads(tail)
    return report["code"], out, report["modules"]


def forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in FORBIDDEN_PREFIXES)]


@pytest.fixture
def home_with_hello(banger_home, banger_plugin_site):
    banger_plugin_site.add("hello", "banger_hello", distribution="banger-hello")
    banger_home.pythonpath += [banger_plugin_site.path, EXAMPLE_DIR]
    return banger_home


def test_daemon_status_round_trip_stays_light(home_with_hello, banger_daemon) -> None:
    code, out, modules = run_cli_and_list_modules(home_with_hello, "daemon", "status", "--json")
    assert code == 0
    assert json.loads(out)["pid"] == banger_daemon.pid  # a real round trip happened
    assert "banger_core.rpc.client" in modules
    assert forbidden(modules) == []


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("plugins", "--json"),
        ("config", "show", "--json"),
        ("hello", "you"),
    ],
)
def test_other_commands_stay_light(home_with_hello, banger_daemon, args) -> None:
    code, out, modules = run_cli_and_list_modules(home_with_hello, *args)
    assert code == 0, out
    assert forbidden(modules) == []


def test_vm_list_stays_light(home_with_hello, banger_daemon) -> None:
    if importlib.util.find_spec("banger_core.cli.vm_cmds") is None:
        pytest.skip("no vm commands yet")
    code, out, modules = run_cli_and_list_modules(home_with_hello, "vm", "list", "--json")
    assert code == 0, out
    assert forbidden(modules) == []


def test_the_check_would_notice(home_with_hello) -> None:
    # Guard the harness: a daemon-side import in the CLI process is seen.
    result = home_with_hello.run_argv(
        [
            sys.executable,
            "-c",
            "import peewee, banger_hello.daemon, sys; "
            "print('\\n@@' + __import__('json').dumps("
            "{'code': 0, 'modules': sorted(sys.modules)}))",
        ]
    )
    modules = json.loads(result.stdout.rpartition("\n@@")[2])["modules"]
    assert {"peewee", "banger_hello.daemon"} <= set(forbidden(modules))


@pytest.mark.parametrize(
    "args",
    [
        ("vm", "list", "--json"),
        ("daemon", "status", "--json"),
        ("image", "list", "--json"),
        ("vm", "create", "--help"),
        ("--help",),
    ],
)
def test_core_commands_import_no_plugin_module(home_with_hello, banger_daemon, args) -> None:
    """With the start-up cache warm, a core command loads no plugin and no entry points."""
    code, out, modules = run_cli_and_list_modules(home_with_hello, "plugins", "--json")
    assert code == 0 and "banger_hello" in modules  # a plugin listing loads the plugins
    code, out, modules = run_cli_and_list_modules(home_with_hello, *args)
    assert code == 0, out
    assert [m for m in modules if m.startswith("banger_hello")] == []
    assert "pluggy" not in modules and "banger_core.plugins" not in modules
    if args == ("--help",):
        assert "hello" in out.split()  # the plugin's command is still listed, from the cache


def test_plugin_command_loads_its_plugin_with_a_warm_cache(home_with_hello, banger_daemon) -> None:
    run_cli_and_list_modules(home_with_hello, "--help")
    code, out, modules = run_cli_and_list_modules(home_with_hello, "hello", "you")
    assert code == 0, out
    assert out.strip() == "hello you" and "banger_hello" in modules


LATE = '''
import click
from banger_core import hookimpl

@hookimpl
def banger_cli_commands():
    @click.command("late")
    def late():
        """A plugin installed after the cache was written."""
    return [late]
'''


def test_installing_a_plugin_invalidates_the_cache(home_with_hello, banger_plugin_site) -> None:
    code, out, _ = run_cli_and_list_modules(home_with_hello, "--help")
    assert code == 0 and "late" not in out.split()
    banger_plugin_site.add("late", "banger_late", LATE, distribution="banger-late")
    code, out, _ = run_cli_and_list_modules(home_with_hello, "--help")
    assert code == 0 and "late" in out.split()
