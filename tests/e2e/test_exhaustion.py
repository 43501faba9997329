"""Resource exhaustion: a full state file system, thin-provisioning overcommit, huge sizes."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

from banger_core import system
from pytest_banger.simhost import SimulatedHost

pytestmark = [pytest.mark.net, pytest.mark.slow]

STATE_FS = "700m"  # room for one VM's root disk (~450M), not two


@pytest.fixture
def small_host(debian_image) -> Iterator[SimulatedHost]:
    """A simulated host whose state directory is a fixed-size tmpfs (removed afterwards)."""
    host = SimulatedHost()
    host.state_dir.mkdir(parents=True)
    system.run(
        ["mount", "-t", "tmpfs", "-o", f"size={STATE_FS},mode=0700", "tmpfs", str(host.state_dir)]
    )
    try:
        host.start()
        host.register_image(debian_image)
        yield host
    finally:
        with contextlib.suppress(Exception):
            host.close()
        system.run(["umount", "--lazy", str(host.state_dir)], check=False)
        shutil.rmtree(host.root, ignore_errors=True)


def _fill(path) -> None:
    """Take every free byte of the file system holding ``path``."""
    filler = path / "filler"
    st = os.statvfs(path)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize)
        block = b"\0" * (1 << 16)
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_END)
            while True:
                os.write(fd, block)
    finally:
        os.close(fd)


def test_full_state_fs_overcommit_and_overflow(small_host):
    host = small_host
    # Overcommit: the sparse disks may grow past what is free; create says so, doctor shows it.
    made = host.cli("vm", "create", "a", "--memory", "256", "--disk-size", "512M")
    assert "thin-provisioning overcommit" in made.stderr, made.stderr
    assert host.state_dir.as_posix() in made.stderr
    doctor = host.cli("doctor", "--json", check=False).stdout
    assert '"disk overcommit"' in doctor and "overcommitted" in doctor

    # Sizes that overflow are refused as too big, not with an OverflowError.
    huge = host.cli("vm", "create", "b", "--memory", "1" + "0" * 400, check=False)
    assert huge.returncode == 1 and "too big" in huge.stderr, huge.stderr
    assert "Overflow" not in huge.stderr

    # A full state file system: one clear line naming it and what is needed.
    _fill(host.state_dir)
    refused = host.cli("vm", "create", "c", "--memory", "256", "--disk-size", "128M", check=False)
    assert refused.returncode == 1
    assert "internal error" not in refused.stderr and "OperationalError" not in refused.stderr
    [error] = [ln for ln in refused.stderr.splitlines() if ln.startswith("banger: error:")]
    assert str(host.state_dir) in error and "free some space" in error, refused.stderr

    # Killing a VM on the full file system leaves the store true: not listed running.
    killed = host.cli("vm", "kill", "a", check=False)
    assert "internal error" not in killed.stderr, killed.stderr
    assert host.json("vm", "show", "a")["state"] == "stopped"
    assert host.vmm_pids() == []
    (host.state_dir / "filler").unlink()
    host.cli("vm", "delete", "a")
