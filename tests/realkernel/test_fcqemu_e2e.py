"""The default Debian image, unchanged, boots its own kernel through banger-fcqemu (slow).

Driven like a user would: ``BANGER_VMM=qemu make demo`` (``python -m
banger_core.demo``) on a simulated host running the simulator switches the
daemon to ``banger-fcqemu`` and creates VM ``demo-qemu``; then the CLI
checks it. Under TCG (no usable KVM here) one boot takes tens of seconds,
so the checks share one VM.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_core import system
from pytest_banger import wait_until
from pytest_banger.fcsim import vsock_http_get
from pytest_banger.simhost import SimulatedHost

pytestmark = [pytest.mark.net, pytest.mark.slow, pytest.mark.realkernel]

VM = "demo-qemu"
AGENT_PORT = 1024
# The vsock device comes from banger-vsock (installed with banger), so the agent is
# reached through banger-fcqemu's bridge. Once the file "pid1" exists next to this
# plugin, it boots banger-boot as the guest's PID 1 (init=, no systemd).
PID1_PLUGIN = """
from pathlib import Path

from banger_core import hookimpl

PID1_FLAG = Path(__file__).with_name("pid1")


@hookimpl
def banger_vm_configure(machine):
    if PID1_FLAG.exists():
        machine.boot_args.append("init=/usr/lib/banger/banger-boot")
"""


def _need_qemu() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TAP devices)")
    if system.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (scripts/install-host-deps)")


@pytest.fixture(scope="module")
def plugin_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bgr-e2e-site-"))
    (path / "e2e_pid1.py").write_text(PID1_PLUGIN)
    info = path / "banger_test_e2e_pid1-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: banger-test-e2e-pid1\nVersion: 0.0.1\n"
    )
    (info / "entry_points.txt").write_text("[banger]\ne2e_pid1 = e2e_pid1\n")
    yield path
    system.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture(scope="module")
def qhost(plugin_dir: Path) -> Iterator[SimulatedHost]:
    _need_qemu()
    from pytest_banger.images import cached_debian_image

    image = cached_debian_image()
    pythonpath = os.pathsep.join(p for p in (str(plugin_dir), os.environ.get("PYTHONPATH")) if p)
    with SimulatedHost(
        ssh_timeout=420.0, stop_grace=180.0, subnet="172.30.7.0/24", env={"PYTHONPATH": pythonpath}
    ) as h:
        h.start()
        h.register_image(image)
        yield h


# Two boots of the real kernel under TCG on a shared 2-core machine (measured: the
# first to SSH alone took 228-285 s under load): a watchdog, not a timing target.
@pytest.mark.timeout(1800)
def test_real_kernel_end_to_end(qhost: SimulatedHost, plugin_dir: Path) -> None:
    # `BANGER_VMM=qemu make demo`: the daemon moves from the simulator to banger-fcqemu.
    assert "the Firecracker simulator" in qhost.cli("doctor").stdout
    started = time.monotonic()
    demo = system.run(
        [sys.executable, "-m", "banger_core.demo"],
        timeout=900,
        env={**qhost.env, "BANGER_VMM": "qemu"},
    )
    boot_seconds = time.monotonic() - started
    assert "restarting the daemon on banger-fcqemu" in demo.stdout, demo.stdout
    assert f"VM {VM} is ready at 172.30.7." in demo.stdout, demo.stdout + demo.stderr
    assert "waiting for agent" in demo.stderr  # banger-vsock's check, through the bridge
    assert demo.stdout.splitlines()[-2] == VM  # `banger vm ssh demo-qemu -- hostname`
    print(f"\nBANGER_VMM=qemu demo (daemon restart + vm create to SSH): {boot_seconds:.1f}s")
    doctor = qhost.cli("doctor").stdout
    assert "banger-fcqemu: the guest's own kernel under QEMU" in doctor

    # The guest's own kernel, its own hostname, configured by banger-boot.
    assert qhost.cli("vm", "ssh", VM, "--", "hostname").stdout.strip() == VM
    uname = qhost.cli("vm", "ssh", VM, "--", "uname", "-r").stdout.strip()
    assert uname.endswith("-cloud-amd64") and uname != os.uname().release

    # The transport banger chose (MMIO, described by ACPI for this kernel) is what QEMU got.
    vmm_log = qhost.cli("vm", "logs", VM, "--vmm").stdout
    command = next(line for line in vmm_log.splitlines() if "QEMU command line:" in line)
    assert "-M microvm,pit=on,pic=on,rtc=on,isa-serial=on,acpi=on,pcie=off" in command
    assert "virtio-blk-device,drive=drive0" in command and "virtio-blk-pci" not in command
    shown = qhost.json("vm", "show", VM)
    assert "--enable-pci" not in Path(f"/proc/{shown['pid']}/cmdline").read_bytes().decode()
    assert "pci=off" in command  # the MMIO command line keeps Firecracker's pci=off
    console = qhost.cli("vm", "logs", VM).stdout
    assert "virtio_blk virtio0: [vda]" in console

    # The agent answers /healthz through the hybrid vsock socket, bridged to virtio-serial.
    uds = qhost.state_dir / "run" / "vms" / shown["id"] / "vsock.sock"
    status, reply = wait_until(
        lambda: vsock_http_get(uds, AGENT_PORT, "/healthz"),
        timeout=120,
        what="the agent's /healthz",
        interval=0.5,
        ignore=(OSError, AssertionError),
    )
    assert status == 200, reply
    assert b'"status": "ok"' in reply and f'"hostname": "{VM}"'.encode() in reply

    # A file under /root (the work disk) survives stop and start.
    qhost.cli("vm", "ssh", VM, "--", "sh", "-c", "'echo kept > /root/note.txt; sync'")
    stopped = qhost.cli("vm", "stop", VM, timeout=600).stdout
    assert stopped.startswith(f"{VM}: stopped (shut down)"), stopped  # Ctrl-Alt-Del, no kill
    vmm_log = qhost.cli("vm", "logs", VM, "--vmm").stdout
    assert "QEMU exited: the guest rebooted or powered off." in vmm_log
    assert "Firecracker exiting successfully. exit_code=0" in vmm_log
    assert "reboot: Restarting system" in qhost.cli("vm", "logs", VM).stdout
    assert qhost.vmm_pids() == []

    # The next boot runs banger-boot as PID 1 on the real kernel (the faster guest mode).
    (plugin_dir / "pid1").touch()
    started = time.monotonic()
    qhost.cli("vm", "start", VM, timeout=600)
    print(f"vm start to SSH with banger-boot as PID 1: {time.monotonic() - started:.1f}s")
    assert qhost.cli("vm", "ssh", VM, "--", "cat", "/root/note.txt").stdout.strip() == "kept"
    assert qhost.cli("vm", "ssh", VM, "--", "cat", "/proc/1/comm").stdout.strip() != "systemd"
    assert qhost.cli("vm", "ssh", VM, "--", "hostname").stdout.strip() == VM
    console = qhost.cli("vm", "logs", VM).stdout
    assert "banger-boot: starting (PID-1 mode on the guest's own kernel)" in console
    _, reply = wait_until(
        lambda: vsock_http_get(uds, AGENT_PORT, "/healthz"),
        timeout=120,
        what="the agent's /healthz (PID 1)",
        interval=0.5,
        ignore=(OSError, AssertionError),
    )
    assert b'"status": "ok"' in reply
    stopped = qhost.cli("vm", "stop", VM, timeout=600).stdout
    assert stopped.startswith(f"{VM}: stopped (shut down)"), stopped
    vmm_log = qhost.cli("vm", "logs", VM, "--vmm").stdout
    assert vmm_log.count("Firecracker exiting successfully. exit_code=0") == 2
    assert "banger-boot: rebooting" in qhost.cli("vm", "logs", VM).stdout

    qhost.cli("vm", "delete", "--force", VM, timeout=300)
    assert qhost.vmm_pids() == []
    leftover = system.run(
        ["pgrep", "-f", f"qemu-system-x86_64 -name banger-{shown['id']}"], check=False
    )
    assert leftover.stdout.strip() == ""
