"""A create whose agent never becomes healthy rolls back completely."""

from __future__ import annotations

import os

import pytest

from pytest_banger.simhost import SimulatedHost

pytestmark = [pytest.mark.net, pytest.mark.slow]


def test_failure_waiting_for_agent_rolls_back():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from pytest_banger.images import cached_debian_image

    image = cached_debian_image()
    with SimulatedHost(tap_pool_size=1, env={"BANGER_FAILPOINTS": "waiting for agent"}) as host:
        host.start()
        host.register_image(image)
        result = host.cli("vm", "create", "doomed", "--memory", "256", check=False)
        assert result.returncode == 1
        assert "injected failure at stage 'waiting for agent'" in result.stderr
        assert "waiting for SSH" in result.stderr  # SSH answered first
        assert host.json("vm", "list") == []
        assert host.vmm_pids() == []
        assert list((host.state_dir / "vms").iterdir()) == []
        run_vms = host.state_dir / "run" / "vms"
        assert not run_vms.exists() or list(run_vms.iterdir()) == []
