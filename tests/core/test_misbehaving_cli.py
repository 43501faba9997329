"""A plugin returning garbage from every hook, installed as a user installs one: the CLI,
``doctor`` and ``daemon status`` keep working and name it (the daemon logs it)."""

from __future__ import annotations

from pathlib import Path

from pytest_banger.plugin import BangerHome, PluginSite

GARBAGE_SOURCE = (Path(__file__).parents[1] / "garbage_plugin.py").read_text()


def _install(home: BangerHome, site: PluginSite) -> None:
    site.add("garbage", "banger_garbage", GARBAGE_SOURCE)
    home.pythonpath.append(site.path)


def test_help_and_vm_create_help_work_and_name_the_plugin(
    banger_home: BangerHome, banger_plugin_site: PluginSite
) -> None:
    _install(banger_home, banger_plugin_site)
    for _ in range(2):  # the second run answers from the CLI's start-up cache
        result = banger_home.run("--help")
        assert result.returncode == 0, result.stderr
        assert "internal error" not in result.stderr
        assert "vm" in result.stdout and "doctor" in result.stdout
        warnings = [w for w in result.stderr.splitlines() if w.startswith("banger: warning: ")]
        assert (
            "banger: warning: plugin garbage: banger_cli_commands: returned "
            "'not-a-command-list' (str), expected list[click.Command]; ignored"
        ) in warnings
        assert (
            "banger: warning: plugin garbage: banger_vm_options: returned 42 (int), "
            "expected list[VMOption]; ignored"
        ) in warnings
        assert (
            "banger: warning: plugin garbage: banger_cli_subcommands: 'vm': 'not-a-list' (str) "
            "is not list[click.Command]; skipped"
        ) in warnings
    create_help = banger_home.run("vm", "create", "--help")
    assert create_help.returncode == 0, create_help.stderr
    assert "--cpus" in create_help.stdout


def test_doctor_and_daemon_status_work_and_name_the_plugin(
    banger_home: BangerHome, banger_plugin_site: PluginSite
) -> None:
    _install(banger_home, banger_plugin_site)
    assert banger_home.run("daemon", "start").returncode == 0
    doctor = banger_home.run("doctor", "--json")
    assert "internal error" not in doctor.stderr
    checks = {c["name"]: c for c in doctor.json()}
    bad = checks["plugin garbage"]
    assert bad["ok"] is False and bad["required"] is False and bad["source"] == "garbage"
    assert bad["detail"] == (
        "banger_doctor_checks: returned {'a': 'dict, not a list of checks'} (dict), "
        "expected list[Check]; ignored"
    )
    status = banger_home.run("daemon", "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = status.json()
    assert shown["ready"] is True and shown["status"] == "ok"
    failures = shown["plugin_failures"]
    for line in (
        "plugin garbage: banger_config_defaults: returned ['not', 'a', 'mapping'] (list), "
        "expected dict[str, Option]; ignored",
        "plugin garbage: banger_rpc_methods: returned ['garbage.method'] (list), "
        "expected dict[str, callable]; ignored",
        "plugin garbage: banger_daemon_started: returned 42 (int), expected None; ignored",
    ):
        assert line in failures
    assert "returned 42 (int)" in shown["plugin_services"]["garbage"]["error"]
    log = banger_home.paths.daemon_log.read_text()
    assert "plugin garbage: banger_rpc_methods: returned ['garbage.method']" in log
    assert banger_home.run("daemon", "stop").returncode == 0
