"""Boot the real image's banger-boot as PID 1 of a throwaway simulated guest (slow).

The guest is what the Firecracker simulator makes: new mount/UTS/PID/net/IPC
namespaces whose root is the image's rootfs.ext4 on a read-only loop device,
with /proc, /sys, a tmpfs /dev holding the drives as /dev/vda.., devpts, a
fake /proc/cmdline and the vsock directory bound at /run/banger-vsock.
Everything is inside namespaces that die with the test; loop devices are
detached in ``finally``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_core.images.build import BuiltImage
from banger_guest.guestconfig_format import write_config_drive
from pytest_banger import wait_until

pytestmark = [pytest.mark.slow]

GUEST_SH = r"""
set -eu
ROOT=$1; CMDLINE=$2; VSOCK=$3; shift 3
mount --make-rprivate /
mount -o ro "$1" "$ROOT"
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$ROOT/dev"
mknod -m 666 "$ROOT/dev/null" c 1 3
mknod -m 666 "$ROOT/dev/zero" c 1 5
mknod -m 666 "$ROOT/dev/random" c 1 8
mknod -m 666 "$ROOT/dev/urandom" c 1 9
mknod -m 666 "$ROOT/dev/tty" c 5 0
mkdir "$ROOT/dev/pts"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$ROOT/dev/pts"
ln -s pts/ptmx "$ROOT/dev/ptmx"
for name in vda vdb vdc; do
    dev=$1; shift
    mknod -m 660 "$ROOT/dev/$name" b $(stat -c '0x%t 0x%T' "$dev")
done
mount --bind "$CMDLINE" "$ROOT/proc/cmdline"
mount --bind "$VSOCK" "$ROOT/run/banger-vsock"
ip link set lo up
hostname before-boot
exec chroot "$ROOT" /usr/bin/env -i BANGER_GUEST_SIMULATED=1 \
    BANGER_VSOCK_DIR=/run/banger-vsock PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /usr/lib/banger/banger-boot
"""


def _need(*programs: str) -> None:
    for p in programs:
        if shutil.which(p) is None and not Path("/usr/sbin", p).exists():
            pytest.skip(f"needs {p}")
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture(scope="module")
def debian_image() -> BuiltImage:
    _need("mmdebstrap", "mkfs.ext4", "unshare", "losetup", "nsenter", "ssh", "ssh-keygen")
    from pytest_banger.images import cached_debian_image

    return cached_debian_image()


class Loops:
    """Loop devices attached for a test, always detached."""

    def __init__(self) -> None:
        self.devices: list[str] = []

    def attach(self, path: Path, *, read_only: bool) -> str:
        argv = (
            ["losetup", "--find", "--show"] + (["--read-only"] if read_only else []) + [str(path)]
        )
        dev = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
        self.devices.append(dev)
        return dev

    def detach_all(self) -> None:
        for dev in reversed(self.devices):
            for _ in range(50):
                if subprocess.run(["losetup", "-d", dev], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
        self.devices.clear()


@pytest.fixture
def loops() -> Iterator[Loops]:
    lo = Loops()
    try:
        yield lo
    finally:
        lo.detach_all()


def _get(sock_path: Path, path: str) -> dict:
    conn = http.client.HTTPConnection("guest", timeout=10)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock_path))
    conn.sock = s
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())
    finally:
        conn.close()


def _wait(predicate, what: str, console: Path):
    """Poll ``predicate`` for 30 s, showing the guest console on failure."""
    return wait_until(
        predicate,
        timeout=30,
        what=what,
        interval=0.1,
        ignore=(OSError, AssertionError),
        diagnostics=lambda: "console:\n" + (console.read_text() if console.exists() else ""),
    )


def _guest_pid(unshare_pid: int) -> int:
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    assert children, "unshare has no child"
    return int(children[0])


def test_boot_as_pid1_in_simulated_guest(
    debian_image: BuiltImage, tmp_path: Path, loops: Loops
) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True
    )
    pubkey = (tmp_path / "id.pub").read_text().strip()
    work = tmp_path / "work.ext4"
    shutil.copyfile(debian_image.work_seed, work)
    config = tmp_path / "config.img"
    write_config_drive(
        str(config),
        {
            "version": 1,
            "hostname": "simvm",
            "ssh": {"authorized_keys": [pubkey]},
            "network": {"nameservers": ["192.0.2.53"]},
            "mounts": [
                {"device": "/dev/vdc", "target": "/root", "fstype": "ext4", "options": "defaults"}
            ],
            "files": [{"path": "/root/hello.txt", "content": "hi from config\n", "mode": "0600"}],
            "agent": {"vsock_port": 1024},
            "plugins": {"test": {"x": 1}},
        },
    )
    root_dev = loops.attach(debian_image.rootfs, read_only=True)
    cfg_dev = loops.attach(config, read_only=True)
    work_dev = loops.attach(work, read_only=False)
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(
        "console=ttyS0 reboot=k panic=1 ip=172.30.0.2::172.30.0.1:"
        "255.255.255.0:simvm:eth0:off root=/dev/vda ro\n"
    )
    vsock = tmp_path / "vsock"
    vsock.mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "guest.sh"
    script.write_text(GUEST_SH)
    console = tmp_path / "console.log"
    with open(console, "wb") as out:
        proc = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--uts",
                "--pid",
                "--net",
                "--ipc",
                "--fork",
                "--kill-child",
                "sh",
                str(script),
                str(mnt),
                str(cmdline),
                str(vsock),
                root_dev,
                cfg_dev,
                work_dev,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(lambda: "boot complete" in console.read_text(), "boot", console)
        sock = vsock / "1024.sock"
        health = _wait(lambda: _get(sock, "/healthz"), "agent /healthz", console)
        assert health["status"] == "ok"
        assert health["hostname"] == "simvm"

        def sshd_listening() -> dict | None:
            ports = _get(sock, "/ports")["ports"]
            return next((p for p in ports if p["port"] == 22 and p["proto"] == "tcp"), None)

        sshd = _wait(sshd_listening, "sshd on port 22", console)
        assert sshd["process"] == "sshd"
        assert "/usr/sbin/sshd" in sshd["command"]

        guest_pid = _guest_pid(proc.pid)
        ssh = subprocess.run(
            [
                "nsenter",
                f"--net=/proc/{guest_pid}/ns/net",
                "ssh",
                "-F",
                "/dev/null",
                "-i",
                str(tmp_path / "id"),
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=10",
                "root@127.0.0.1",
                "hostname; cat /root/hello.txt; cat /etc/resolv.conf; findmnt -n -o SOURCE /root",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ssh.returncode == 0, ssh.stderr + console.read_text()
        lines = ssh.stdout.splitlines()
        assert lines[0] == "simvm"
        assert "hi from config" in lines
        assert "nameserver 192.0.2.53" in lines
        assert lines[-1] == "/dev/vdc"

        os.kill(guest_pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = console.read_text()
    for expected in (
        "banger-boot: mounted tmpfs on /run",
        "kept /run/banger-vsock",
        "ssh host keys in /run/banger/ssh: made ed25519, ecdsa",
        "received SIGINT",
        "unmounted /root",
        "unmounted /run",
        "halted",
    ):
        assert expected in log, log
    assert "banger-boot: error" not in log, log
    # authorized_keys and the file landed on the work disk (mounted before they were written),
    # and the work disk was unmounted cleanly.
    keys = subprocess.run(
        ["debugfs", "-R", "cat /.ssh/authorized_keys", str(work)], capture_output=True, text=True
    ).stdout
    assert pubkey in keys
    fsck = subprocess.run(["e2fsck", "-n", "-f", str(work)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
