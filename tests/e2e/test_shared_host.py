"""Two installations on one machine: one's simulator cleanup leaves the other's guests alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from banger_core import system
from pytest_banger.simhost import SimulatedHost, console_script

pytestmark = [pytest.mark.net, pytest.mark.slow]


def _netns_of(host: SimulatedHost) -> list[str]:
    names = []
    for path in host.fcsim_run_dir.glob("*.json"):
        data = json.loads(path.read_text())
        if data.get("netns"):
            names.append(data["netns"])
    return names


def test_cleanup_all_keeps_another_installations_live_guest(debian_image):
    """Issue 11: `banger-fcsim --cleanup --all` from one installation deleted the
    network-namespace name of another installation's running guest."""
    with SimulatedHost(subnet="172.30.10.0/24") as a, SimulatedHost(subnet="172.30.11.0/24") as b:
        for h in (a, b):
            h.start()
            h.register_image(debian_image)
        a.cli("vm", "create", "alive", "--memory", "256")
        [netns] = _netns_of(a)
        assert os.path.exists(f"/run/netns/{netns}")
        out = system.run(
            [console_script("banger-fcsim"), "--cleanup", "--all"], env=b.env, timeout=60
        ).stdout
        assert f"removed orphan namespace {netns}" not in out, out
        assert Path(f"/run/netns/{netns}").exists()
        assert a.cli("vm", "ssh", "alive", "--", "hostname").stdout.strip() == "alive"
        a.cli("vm", "delete", "--force", "alive")
        assert not Path(f"/run/netns/{netns}").exists()
