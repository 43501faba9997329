"""End to end on the real Debian image: configure purely through FirecrackerClient,
boot, SSH in, persist a file on the work disk across a Ctrl-Alt-Del reboot,
reach the guest agent over hybrid vsock, and check forced cleanup (slow).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from banger_core import system
from banger_core.firecracker import FirecrackerClient
from pytest_banger import wait_until
from pytest_banger.fcsim import tcp_connect_in, vsock_http_get

from .conftest import NetnsHost, SimRunner

pytestmark = [pytest.mark.net, pytest.mark.slow]

GUEST_IP = "172.30.0.2"
HOSTNAME = "e2e-guest"
AGENT_PORT = 1024


def _guest_format():
    try:
        from banger_guest import guestconfig_format
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "guest"))
        from banger_guest import guestconfig_format
    return guestconfig_format


@pytest.fixture(scope="module")
def debian_image():
    _guest_format()
    from pytest_banger.images import cached_debian_image

    return cached_debian_image()


class Machine:
    """One VM boot through the client."""

    def __init__(self, sim: SimRunner, ns: NetnsHost, image, disks: dict[str, Path]) -> None:
        self.sim, self.ns, self.image, self.disks = sim, ns, image, disks
        self.uds = sim.tmp / "v.sock"

    def boot(self, env: dict[str, str] | None = None):
        if self.uds.exists():  # Firecracker never removes it; the client must.
            self.uds.unlink()
        sock = self.sim.tmp / "fc.sock"
        if sock.exists():
            sock.unlink()
        proc, sock = self.sim.start(sock, netns=self.ns.name, env=env, vm_id="e2e-vm")
        with FirecrackerClient(sock) as c:
            c.put_logger(self.sim.tmp / "fc.log", "Info", True, False)
            c.put_machine_config(2, 512)
            c.put_boot_source(
                self.image.kernel,
                f"console=ttyS0 reboot=k panic=1 ip={GUEST_IP}::172.30.0.1:255.255.255.0::eth0:off",
                self.image.initrd,
            )
            c.put_drive("rootfs", self.image.rootfs, True, True)
            c.put_drive("config", self.disks["config"], False, True)
            c.put_drive("work", self.disks["work"], False, False)
            c.put_network_interface("net1", "tap0", "06:00:ac:1e:00:02")
            c.put_vsock(3, self.uds)
            started = time.monotonic()
            c.instance_start()
            self.start_latency = time.monotonic() - started
        self.sim.note_tokens()
        return proc, sock

    def ssh(self, key: Path):
        from fabric import Connection

        sock = wait_until(
            lambda: tcp_connect_in(self.ns.name, GUEST_IP, 22, timeout=2),
            timeout=60,
            what="sshd",
            interval=0.2,
            ignore=(OSError,),
            diagnostics=lambda: self.sim.console()[-4000:],
        )
        return Connection(
            GUEST_IP,
            user="root",
            connect_kwargs={
                "key_filename": str(key),
                "sock": sock,
                "look_for_keys": False,
                "allow_agent": False,
                "banner_timeout": 30,
            },
        )


def test_debian_guest_end_to_end(
    sim: SimRunner, test_netns: NetnsHost, debian_image, fc_tmp: Path
) -> None:
    fmt = _guest_format()
    key = fc_tmp / "id_ed25519"
    system.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], timeout=30)
    pub = (fc_tmp / "id_ed25519.pub").read_text().strip()
    config = fc_tmp / "config.img"
    fmt.write_config_drive(
        str(config),
        {
            "version": 1,
            "hostname": HOSTNAME,
            "ssh": {"authorized_keys": [pub]},
            # Debian's kernel has no CONFIG_IP_PNP: ip= is ignored and the guest's
            # banger-boot brings eth0 up from here (what the core writes too).
            "network": {
                "address": GUEST_IP,
                "prefix": 24,
                "gateway": "172.30.0.1",
                "mac": "06:00:ac:1e:00:02",
            },
            "mounts": [
                {"device": "/dev/vdc", "target": "/root", "fstype": "ext4", "options": "defaults"}
            ],
            "agent": {"vsock_port": AGENT_PORT},
        },
    )
    work = fc_tmp / "work.ext4"
    shutil.copyfile(debian_image.work_seed, work)
    test_netns.add_tap("tap0")
    vm = Machine(sim, test_netns, debian_image, {"config": config, "work": work})
    timings: dict[str, float] = {}

    # ---- first boot
    t0 = time.monotonic()
    proc, sock = vm.boot()
    timings["instance_start_api"] = vm.start_latency
    conn = vm.ssh(key)
    timings["boot_to_ssh"] = time.monotonic() - t0
    assert conn.run("hostname", hide=True, in_stream=False).stdout.strip() == HOSTNAME
    assert "root=/dev/vda ro" in conn.run("cat /proc/cmdline", hide=True, in_stream=False).stdout
    # The kernel ignored ip= (no IP_PNP): the guest configured eth0 itself.
    assert "ip= ignored (no IP_PNP)" in (sim.tmp / "fc.log").read_text()
    assert f"banger-boot: network eth0 {GUEST_IP}/24" in sim.console()
    conn.run("echo persisted-$(hostname) > /root/hello.txt && sync", hide=True, in_stream=False)
    conn.close()
    status, body = wait_until(
        lambda: vsock_http_get(vm.uds, AGENT_PORT, "/healthz"),
        timeout=30,
        what="agent over vsock",
        interval=0.2,
        ignore=(OSError, AssertionError),
        diagnostics=lambda: sim.console()[-4000:],
    )
    assert status == 200, body
    t1 = time.monotonic()
    with FirecrackerClient(sock) as c:
        c.send_ctrl_alt_del()
    assert proc.wait(timeout=30) == 0
    timings["ctrl_alt_del_to_exit"] = time.monotonic() - t1
    assert not sim.leftovers()

    # ---- second boot from the same work disk
    t0 = time.monotonic()
    proc, sock = vm.boot()
    conn = vm.ssh(key)
    timings["second_boot_to_ssh"] = time.monotonic() - t0
    assert (
        conn.run("cat /root/hello.txt", hide=True, in_stream=False).stdout.strip()
        == f"persisted-{HOSTNAME}"
    )
    conn.close()
    with FirecrackerClient(sock) as c:
        c.send_ctrl_alt_del()
    assert proc.wait(timeout=30) == 0

    # ---- a guest that ignores Ctrl-Alt-Del: forced cleanup by SIGKILL + watchdog
    proc, sock = vm.boot(env={"BANGER_FCSIM_IGNORE_CTRL_ALT_DEL": "1"})
    conn = vm.ssh(key)
    with FirecrackerClient(sock) as c:
        c.send_ctrl_alt_del()
    # The simulator handles the action before it answers: by now the guest has
    # been asked and has ignored the request (no waiting for "nothing happened").
    assert "Guest ignores Ctrl-Alt-Del" in (sim.tmp / "fc.log").read_text()
    assert proc.poll() is None
    assert conn.run("hostname", hide=True, in_stream=False).stdout.strip() == HOSTNAME
    conn.close()
    t1 = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    wait_until(lambda: not sim.leftovers(), timeout=30, what="watchdog cleanup", interval=0.2)
    timings["sigkill_to_clean"] = time.monotonic() - t1
    (fc_tmp / "timings.json").write_text(json.dumps(timings))
    print("timings:", json.dumps(timings))
