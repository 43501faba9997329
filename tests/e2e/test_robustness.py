"""Rollback, cancellation, crashes and concurrency on the simulated host."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from banger_core import system
from banger_core.firecracker.launcher import wait_for_exit
from pytest_banger import wait_until
from pytest_banger.simhost import SimulatedHost
from tests.e2e.helpers import assert_nothing_left, cli_until_vmm_starts, links

pytestmark = [pytest.mark.net, pytest.mark.slow]

STAGES = ["preflight", "disks", "network", "boot", "waiting for SSH", "ready"]


@pytest.mark.parametrize("stage", STAGES)
def test_failed_create_rolls_back_every_stage(debian_image, stage):
    with SimulatedHost(env={"BANGER_FAILPOINTS": stage}) as host:
        host.start()
        host.register_image(debian_image)
        result = host.cli("vm", "create", "doomed", check=False)
        assert result.returncode == 1
        assert f"injected failure at stage {stage!r}" in result.stderr
        assert_nothing_left(host)
        assert links(host, "veth") == []


def test_failed_start_rolls_back(debian_image):
    with SimulatedHost() as host:
        host.start()
        host.register_image(debian_image)
        host.cli("vm", "create", "box", "--memory", "256")
        host.cli("vm", "stop", "box")
        pool_before = len(links(host, "bgtap"))
        # Restart the daemon with a failpoint in the boot stage of start.
        host.cli("daemon", "stop")
        host.env["BANGER_FAILPOINTS"] = "waiting for SSH"
        host.start()
        failed = host.cli("vm", "start", "box", check=False)
        assert failed.returncode == 1 and "injected failure" in failed.stderr
        shown = host.json("vm", "show", "box")
        assert shown["state"] == "stopped" and shown["pid"] is None and shown["tap"] is None
        assert "injected failure" in shown["last_error"]
        assert host.vmm_pids() == []
        assert len(links(host, "bgtap")) == pool_before


def test_ctrl_c_cancels_create_and_rolls_back(debian_image, tmp_path):
    # The guest's init waits for a gate file that is never made: once the VMM runs,
    # the create is known to be mid-boot, whatever the machine's load.
    gate = tmp_path / "boot-gate"
    with SimulatedHost(env={"BANGER_FCSIM_BOOT_GATE": str(gate)}) as host:
        host.start()
        host.register_image(debian_image)
        proc = cli_until_vmm_starts(host, "vm", "create", "slow")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0
        assert "cancelled" in err.decode() and "rolled back" in err.decode()
        assert not gate.exists()  # the guest never got past the gate: it was mid-boot
        assert_nothing_left(host)


@pytest.mark.host_env({"BANGER_FCSIM_IGNORE_CTRL_ALT_DEL": "1"})
def test_stop_falls_back_to_forced_cleanup(fresh_host):
    fresh_host.cli("vm", "create", "stubborn", "--memory", "256")
    pid = fresh_host.json("vm", "show", "stubborn")["pid"]
    started = time.monotonic()
    out = fresh_host.cli("vm", "stop", "stubborn").stdout
    assert out.startswith("stubborn: stopped (killed after grace period)")
    assert time.monotonic() - started >= 5  # the configured grace period
    assert not Path(f"/proc/{pid}").exists()
    assert fresh_host.vmm_pids() == []


def test_daemon_sigkill_mid_create_then_restart_is_consistent(debian_image):
    with SimulatedHost(env={"BANGER_FCSIM_BOOT_DELAY": "6"}) as host:
        host.start()
        host.register_image(debian_image)
        proc = cli_until_vmm_starts(host, "vm", "create", "orphan")
        daemon = host.daemon_pid()
        os.kill(daemon, signal.SIGKILL)
        assert wait_for_exit(daemon, 10)
        proc.communicate(timeout=30)
        host.start()  # reconcile runs before the daemon answers
        wait_until(lambda: not host.vmm_pids(), timeout=20, what="the orphaned VMM to go")
        assert_nothing_left(host)


def test_crashed_vmm_is_noticed_and_released(fresh_host):
    fresh_host.cli("vm", "create", "fragile", "--memory", "256")
    info = fresh_host.json("vm", "show", "fragile")
    os.kill(info["pid"], signal.SIGTERM)
    shown = wait_until(
        lambda: (s := fresh_host.json("vm", "show", "fragile"))["state"] == "stopped" and s,
        timeout=20,
        what="the crashed VM to be noticed",
        interval=0.3,
    )
    assert shown["tap"] is None and shown["pid"] is None
    # The daemon released the TAP: no TAP is held for a VM any more (all that is
    # left is the idle pool, exactly its size once a refill settles), and the
    # crashed VM's TAP is either deleted or idle in the pool, not held.
    released = {"taps_in_use": 0, "idle_taps": fresh_host.tap_pool_size}

    def network() -> dict:
        return {k: fresh_host.json("daemon", "status")["services"]["network"][k] for k in released}

    wait_until(
        lambda: network() == released,
        timeout=10,
        what="the crashed VM's TAP to be released",
        diagnostics=lambda: f"network: {network()}",
    )
    taps = wait_until(
        lambda: (t := links(fresh_host, "bgtap")) and len(t) == fresh_host.tap_pool_size and t,
        timeout=10,
        what=f"exactly {fresh_host.tap_pool_size} TAPs (the idle pool)",
        diagnostics=lambda: f"TAPs: {links(fresh_host, 'bgtap')}",
    )
    if info["tap"] in taps:  # kept as an idle spare: nothing holds it open
        assert "NO-CARRIER" in fresh_host.netns_run("ip", "link", "show", info["tap"]).stdout
    assert fresh_host.cli("vm", "start", "fragile").stdout.startswith("fragile: running")


def test_reconcile_on_restart_marks_dead_vms_stopped(fresh_host):
    fresh_host.cli("vm", "create", "sleeper", "--memory", "256")
    fresh_host.cli("daemon", "stop")
    pid = fresh_host.vmm_pids()[0]
    os.kill(pid, signal.SIGTERM)
    assert wait_for_exit(pid, 15)
    fresh_host.start()
    shown = fresh_host.json("vm", "show", "sleeper")
    assert shown["state"] == "stopped" and shown["pid"] is None


def test_eight_concurrent_creates_all_reach_ssh(debian_image):
    with SimulatedHost(tap_pool_size=4) as host:
        host.start()
        host.register_image(debian_image)
        names = [f"par{i}" for i in range(8)]
        results: dict[str, system.Result] = {}

        def create(name: str) -> None:
            results[name] = host.cli(
                "vm", "create", name, "--memory", "128", check=False, timeout=400
            )

        threads = [threading.Thread(target=create, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failures = {n: r.stderr for n, r in results.items() if r.returncode != 0}
        assert failures == {}
        listing = host.json("vm", "list")
        assert sorted(v["name"] for v in listing) == names
        assert {v["state"] for v in listing} == {"running"}
        assert len({v["ip"] for v in listing}) == 8
        for name in names:
            assert host.cli("vm", "ssh", name, "--", "hostname").stdout.strip() == name
        host.cli("vm", "delete", "--force", *names)
        assert_nothing_left(host)


def test_ctrl_c_cancels_start_and_rolls_back(debian_image, tmp_path):
    gate = tmp_path / "boot-gate"
    gate.touch()  # open for the create
    with SimulatedHost(env={"BANGER_FCSIM_BOOT_GATE": str(gate)}) as host:
        host.start()
        host.register_image(debian_image)
        host.cli("vm", "create", "later", "--memory", "256")
        host.cli("vm", "stop", "later")
        pool = len(links(host, "bgtap"))
        gate.unlink()  # closed: the start's guest stays mid-boot until interrupted
        proc = cli_until_vmm_starts(host, "vm", "start", "later")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "interrupted" in err.decode()
        wait_until(
            lambda: not host.vmm_pids() and not host.json("vm", "show", "later")["tap"],
            timeout=20,
            what="the cancelled start to roll back",
        )
        shown = host.json("vm", "show", "later")
        assert shown["state"] == "stopped" and shown["pid"] is None and shown["tap"] is None
        assert host.vmm_pids() == []
        assert len(links(host, "bgtap")) == pool  # the TAP went back to the pool
