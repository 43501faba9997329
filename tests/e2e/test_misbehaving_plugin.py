"""A plugin returning garbage from every hook leaves ``vm create`` and the VM's life working
on the simulated host, and the daemon names it (issue 15 item 4, end to end)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_banger.simhost import SimulatedHost
from tests.e2e.helpers import assert_nothing_left

pytestmark = [pytest.mark.net, pytest.mark.slow]

GARBAGE = Path(__file__).parents[1] / "garbage_plugin.py"


def test_vm_lifecycle_works_with_a_garbage_plugin(debian_image: object, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(GARBAGE, source / "banger_garbage.py")
    with SimulatedHost(tap_pool_size=1) as host:
        host.install_plugin("garbage", "banger_garbage", source, restart=False)
        host.start()
        host.register_image(debian_image)
        created = host.cli("vm", "create", "web", "--cpus", "1", "--memory", "256")
        assert "VM web is ready" in created.stdout
        assert "internal error" not in created.stderr
        assert "plugin garbage: banger_vm_options: returned 42 (int)" in created.stderr
        assert host.cli("vm", "ssh", "web", "--", "hostname").stdout.strip() == "web"
        shown = host.json("vm", "show", "web")
        assert shown["state"] == "running" and shown["dns_names"] == ["web.vm"]
        doctor = host.cli("doctor", check=False)
        assert "plugin garbage [garbage]" in doctor.stdout
        assert host.cli("vm", "stop", "web").returncode == 0
        assert host.cli("vm", "start", "web").returncode == 0
        assert host.cli("vm", "delete", "--force", "web").returncode == 0
        status = host.json("daemon", "status")
        failures = status["plugin_failures"]
        for hook, expected in (
            ("banger_vm_create", "None"),
            ("banger_vm_configure", "None"),
            ("banger_vm_started", "None"),
            ("banger_vm_stopped", "None"),
            ("banger_vm_deleted", "None"),
            ("banger_vm_validate", "None"),
            ("banger_vm_dns_names", "list[str]"),
            ("banger_reconcile", "None"),
        ):
            line = f"plugin garbage: {hook}: returned 42 (int), expected {expected}; ignored"
            assert line in failures, failures
        assert (
            "plugin garbage: banger_vm_ready_checks: returned 'not-a-list' (str), "
            "expected list[ReadyCheck]; ignored"
        ) in failures
        log = Path(status["log"]).read_text()
        assert "plugin garbage: banger_vm_create: returned 42 (int)" in log
        assert_nothing_left(host)
