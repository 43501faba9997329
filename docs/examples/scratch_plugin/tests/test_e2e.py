"""banger-scratch end to end: the real CLI and daemon on banger's simulated host."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_banger import cached_debian_image

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parents[1]


def test_scratch_disk_end_to_end(banger_sim_host) -> None:
    host = banger_sim_host
    host.install_plugin("scratch", "banger_scratch", HERE)
    host.register_image(cached_debian_image())

    assert "--scratch-size" in host.cli("vm", "create", "--help").stdout
    bad = host.cli("vm", "create", "box", "--scratch-size", "1M", check=False)
    assert bad.returncode == 1 and "--scratch-size 1M is not allowed" in bad.stderr

    host.cli("vm", "create", "box", "--scratch-size", "64M", "--memory", "256")
    shown = host.json("vm", "show", "box")
    assert shown["options"]["scratch"]["scratch_size"] == 64 << 20
    mounted = host.cli(
        "vm", "ssh", "box", "--", "findmnt", "-n", "-o", "SOURCE,SIZE", "/scratch"
    ).stdout.split()
    assert mounted[0].startswith("/dev/vd")
    info = host.json("vm", "scratch", "box")
    assert info["exists"] and info["size"] == 64 << 20 and info["mount_point"] == "/scratch"
    missing = host.cli("vm", "scratch", "ghost", check=False)
    assert missing.returncode == 1 and "no VM 'ghost'" in missing.stderr
    host.cli("vm", "delete", "--force", "box")
    assert not Path(info["path"]).exists()
