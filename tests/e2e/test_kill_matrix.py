"""Crashes at every stage: the daemon SIGKILLed or stopped mid-operation, VMMs dying unseen.

The default run covers one stage per operation; ``BANGER_LONG_TESTS=1``
runs every stage.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_core import system
from banger_core.firecracker.launcher import wait_for_exit
from pytest_banger import wait_until
from pytest_banger.simhost import SimulatedHost, console_script
from tests.e2e.helpers import assert_nothing_left, links

pytestmark = [pytest.mark.net, pytest.mark.slow]

LONG = os.environ.get("BANGER_LONG_TESTS") == "1"
CREATE_STAGES = ["preflight", "disks", "network", "boot", "waiting for SSH", "ready"]
START_STAGES = ["network", "boot", "waiting for SSH", "ready"]


def _cases() -> list[tuple[str, str]]:
    every = (
        [("create", s) for s in CREATE_STAGES]
        + [("start", s) for s in START_STAGES]
        + [("stop", "stopping"), ("restart", "stopping")]
        + [("restart", s) for s in START_STAGES]
        + [("delete", "deleting")]
    )
    if LONG:
        return every
    return [
        ("create", "network"),
        ("start", "waiting for SSH"),
        ("stop", "stopping"),
        ("restart", "boot"),
        ("delete", "deleting"),
    ]


@pytest.fixture(scope="module")
def mhost(debian_image) -> Iterator[SimulatedHost]:
    with SimulatedHost(tap_pool_size=2) as h:
        h.start()
        h.register_image(debian_image)
        yield h


def _restart_daemon(host: SimulatedHost, env: dict[str, str]) -> None:
    host.cli("daemon", "stop")
    for var in (
        "BANGER_HANGPOINTS",
        "BANGER_HANGPOINT_MARK",
        "BANGER_HANGPOINT_SECONDS",
        "BANGER_WATCH_INTERVAL",
    ):
        host.env.pop(var, None)
    host.env.update(env)
    host.start()


def _spawn(host: SimulatedHost, *args: str) -> subprocess.Popen:
    return system.spawn(
        [console_script("banger"), *args],
        env=host.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _hang_at(host: SimulatedHost, stage: str, mark: Path, seconds: str = "") -> None:
    mark.unlink(missing_ok=True)
    env = {"BANGER_HANGPOINTS": stage, "BANGER_HANGPOINT_MARK": str(mark)}
    if seconds:
        env["BANGER_HANGPOINT_SECONDS"] = seconds
    _restart_daemon(host, env)


def _command(op: str, name: str) -> list[str]:
    if op == "create":
        return ["vm", "create", name, "--memory", "256"]
    if op == "delete":
        return ["vm", "delete", name]
    return ["vm", op, name]


def _prepare(host: SimulatedHost, op: str, name: str) -> None:
    if op == "create":
        return
    host.cli("vm", "create", name, "--memory", "256")
    if op in ("start", "delete"):
        host.cli("vm", "stop", name)


def _check_usable_then_clean(host: SimulatedHost, name: str) -> None:
    """Whatever state the VM is in, start, stop and delete work and nothing leaks."""
    names = [v["name"] for v in host.json("vm", "list")]
    if name in names:
        shown = host.json("vm", "show", name)
        assert shown["state"] in ("running", "stopped"), shown
        if shown["state"] == "running":
            assert shown["pid"] and Path(f"/proc/{shown['pid']}").exists()
        else:
            assert shown["pid"] is None and shown["tap"] is None
        assert "running" in host.cli("vm", "start", name).stdout
        assert "stopped" in host.cli("vm", "stop", name).stdout
        host.cli("vm", "delete", name)
    wait_until(lambda: not host.vmm_pids(), timeout=20, what="VMMs to exit")
    assert_nothing_left(host)
    assert not list((host.state_dir / "run" / "vms").iterdir())
    # No simulator records (each names the guest's network namespace) are left.
    wait_until(
        lambda: not list(host.fcsim_run_dir.glob("*.json")),
        timeout=20,
        what="simulator state (namespaces, loops) to be removed",
    )


@pytest.mark.parametrize(("op", "stage"), _cases())
def test_sigkill_daemon_at_each_stage(mhost, tmp_path, op, stage):
    name = f"k-{op[:3]}-{stage.split()[0][:6]}"
    _prepare(mhost, op, name)
    mark = tmp_path / "mark"
    _hang_at(mhost, stage, mark)
    try:
        proc = _spawn(mhost, *_command(op, name))
        wait_until(mark.exists, timeout=120, what=f"{op} to reach stage {stage!r}")
        daemon = mhost.daemon_pid()
        os.kill(daemon, signal.SIGKILL)
        assert wait_for_exit(daemon, 10)
        proc.communicate(timeout=60)
    finally:
        _restart_daemon(mhost, {})
    expected = {"create": None, "delete": None}.get(op, "any")
    listed = {v["name"]: v["state"] for v in mhost.json("vm", "list")}
    if expected is None:
        assert name not in listed, listed
    else:
        assert listed.get(name) in ("running", "stopped"), listed
    _check_usable_then_clean(mhost, name)


SIGTERM_CASES = [
    ("create", "waiting for SSH", "rolled back"),
    ("start", "boot", "rolled back"),
    ("stop", "stopping", "stopped"),
    ("delete", "deleting", "deleted"),
]


@pytest.mark.parametrize(
    ("op", "stage", "outcome"), SIGTERM_CASES if LONG else [SIGTERM_CASES[0], SIGTERM_CASES[2]]
)
def test_daemon_stop_during_operation_finishes_or_rolls_back(mhost, tmp_path, op, stage, outcome):
    name = f"t-{op[:3]}"
    _prepare(mhost, op, name)
    mark = tmp_path / "mark"
    # Stops and deletes finish after a short pause; creates and starts hang until cancelled.
    _hang_at(mhost, stage, mark, "2" if op in ("stop", "delete") else "")
    try:
        proc = _spawn(mhost, *_command(op, name))
        wait_until(mark.exists, timeout=120, what=f"{op} to reach stage {stage!r}")
        stopped = mhost.cli("daemon", "stop", "--timeout", "60")
        assert "bangerd stopped" in stopped.stdout
        out, err = proc.communicate(timeout=60)
    finally:
        _restart_daemon(mhost, {})
    said = out.decode() + err.decode()
    assert "internal error" not in said and "RuntimeError" not in said, said
    assert outcome in said, said
    if outcome == "rolled back":
        assert proc.returncode != 0
        assert "daemon is stopping" in said, said
    else:
        assert proc.returncode == 0, said
    listed = {v["name"]: v["state"] for v in mhost.json("vm", "list")}
    if op in ("create", "delete"):
        assert name not in listed
    else:
        assert listed[name] == "stopped"
    _check_usable_then_clean(mhost, name)


def test_vm_caught_starting_by_daemon_crash_is_adopted(mhost, tmp_path):
    """Issue 11: SIGKILL of bangerd during `vm start` left the VM `starting` for good."""
    _prepare(mhost, "start", "t1")
    mark = tmp_path / "mark"
    _hang_at(mhost, "waiting for SSH", mark)
    try:
        proc = _spawn(mhost, "vm", "start", "t1")
        wait_until(mark.exists, timeout=120, what="start to wait for SSH")
        daemon = mhost.daemon_pid()
        os.kill(daemon, signal.SIGKILL)
        assert wait_for_exit(daemon, 10)
        proc.communicate(timeout=60)
    finally:
        _restart_daemon(mhost, {})
    shown = mhost.json("vm", "show", "t1")
    assert shown["state"] == "running", shown
    assert "running" in mhost.cli("vm", "start", "t1").stdout
    _check_usable_then_clean(mhost, "t1")


def test_start_releases_a_vm_whose_vmm_died_unseen(mhost):
    """Issue 11: `vm start` on a VM still marked running whose VMM died re-booted it
    without releasing the old TAP or calling the stopped hooks."""
    _restart_daemon(mhost, {"BANGER_WATCH_INTERVAL": "3600"})  # the watcher never looks
    try:
        mhost.cli("vm", "create", "m1", "--memory", "256")
        before = mhost.json("vm", "show", "m1")
        os.kill(before["pid"], signal.SIGKILL)
        assert wait_for_exit(before["pid"], 10)
        assert mhost.json("vm", "show", "m1")["state"] == "running"  # not noticed yet
        assert "running" in mhost.cli("vm", "start", "m1").stdout
        after = mhost.json("vm", "show", "m1")
        assert after["pid"] != before["pid"]
        # One TAP in use, the rest is the idle pool: the old TAP went back.
        wait_until(
            lambda: len(links(mhost, "bgtap")) <= mhost.tap_pool_size + 1,
            timeout=10,
            what="the old TAP to be released",
        )
    finally:
        _restart_daemon(mhost, {})
    _check_usable_then_clean(mhost, "m1")
