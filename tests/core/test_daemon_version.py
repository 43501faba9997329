"""The CLI compares its version with the running daemon's, and replaces a stale one it started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from banger_core.firecracker.launcher import wait_for_exit
from pytest_banger.plugin import BangerHome, start_daemon

OLD = "0.0.9"


def old_banger(tmp_path: Path) -> dict[str, str]:
    """Environment that makes banger (CLI and daemon) report version OLD: an older install."""
    site = tmp_path / "old-banger"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        f"import banger_core\nbanger_core.__version__ = {OLD!r}\n"
    )
    parts = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(parts)}


@pytest.mark.skipif(os.geteuid() != 0, reason="replacing a stale daemon is for root")
def test_root_replaces_an_older_daemon_the_cli_started(banger_home: BangerHome, tmp_path):
    started = banger_home.run("daemon", "start", env=old_banger(tmp_path))
    assert started.returncode == 0, started.stderr
    old = banger_home.run("daemon", "status", "--json", env=old_banger(tmp_path)).json()
    assert old["version"] == OLD and old["started_by"] == "banger"

    listed = banger_home.run("vm", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines() == [
        f"banger: bangerd {OLD} (pid {old['pid']}) is older than this banger 0.1.0; "
        "restarting it (VMs keep running)"
    ]
    assert wait_for_exit(old["pid"], 10)
    new = banger_home.run("daemon", "status", "--json").json()
    assert new["version"] == "0.1.0" and new["pid"] != old["pid"]
    assert new["started_by"] == "banger"
    # Same version now: nothing more is said.
    assert banger_home.run("vm", "list").stderr == ""


def test_a_daemon_of_another_version_not_started_by_banger_is_named(
    banger_home: BangerHome, tmp_path
):
    banger_home.env_overrides.update(old_banger(tmp_path))
    handle = start_daemon(banger_home)  # bangerd run directly, as a service manager would
    banger_home.env_overrides.clear()

    listed = banger_home.run("vm", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines() == [
        f"banger: warning: bangerd {OLD} (pid {handle.pid}) is running, but this banger is "
        "0.1.0; restart it to use this version: banger daemon restart"
    ]
    assert handle.rpc("daemon.version") == {
        "version": OLD,
        "pid": handle.pid,
        "started_by": "other",
        "operations": 0,
    }
    # `banger daemon restart` replaces it, whoever started it.
    restarted = banger_home.run("daemon", "restart")
    assert restarted.returncode == 0, restarted.stderr
    assert banger_home.run("daemon", "status", "--json").json()["version"] == "0.1.0"


def test_a_newer_daemon_is_never_replaced(banger_home: BangerHome, tmp_path):
    """An older CLI next to a newer daemon (the CLI here reports OLD) only warns."""
    started = banger_home.run("daemon", "start")
    assert started.returncode == 0, started.stderr
    pid = banger_home.run("daemon", "status", "--json").json()["pid"]
    listed = banger_home.run("vm", "list", env=old_banger(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines() == [
        f"banger: warning: bangerd 0.1.0 (pid {pid}) is running, but this banger is "
        f"{OLD}; restart it to use this version: banger daemon restart"
    ]
    assert banger_home.run("daemon", "status", "--json").json()["pid"] == pid
