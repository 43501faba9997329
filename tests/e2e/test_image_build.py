"""``banger image build`` through the CLI: a real mmdebstrap build, then a VM from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_banger.simhost import SimulatedHost

pytestmark = [pytest.mark.net, pytest.mark.slow]


def test_build_register_boot_and_delete():
    with SimulatedHost() as host:
        host.start()
        bad = host.cli("image", "build", "Bad_Name", check=False)
        assert bad.returncode == 1 and "is not valid" in bad.stderr
        unknown = host.cli("image", "build", "x", "--os", "plan9", check=False)
        assert "unknown guest OS 'plan9' (known: debian)" in unknown.stderr

        built = host.cli("image", "build", "deb", timeout=900)
        for stage in ("bootstrap", "provision", "kernel", "artifacts", "rootfs", "register"):
            assert stage in built.stderr
        assert built.stdout.startswith("image deb built")
        shown = host.json("image", "show", "deb")
        assert shown["managed"] and shown["os"] == "debian" and len(shown["fingerprint"]) == 64
        files = [Path(shown[k]) for k in ("kernel", "rootfs")]
        files.append(Path(shown["artifacts"]["work-seed"]))
        assert all(f.is_file() for f in files)

        host.cli("vm", "create", "fromdeb", "--image", "deb", "--memory", "256")
        assert host.cli("vm", "ssh", "fromdeb", "--", "hostname").stdout.strip() == "fromdeb"
        host.cli("vm", "delete", "--force", "fromdeb")
        host.cli("image", "delete", "deb")
        assert host.json("image", "list") == []
        assert not any(f.exists() for f in files)
