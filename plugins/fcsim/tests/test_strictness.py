"""The simulator refuses what Firecracker and the guest kernel would (docs/simulator.md).

Each test boots the tiny root file system with a synthetic kernel whose
embedded configuration (IKCONFIG) says what the "kernel" can do, inside a
``bgr-test-*`` namespace; the ``sim`` fixture checks nothing is left behind.
``test_netns`` is requested before ``sim`` so the simulators are stopped (and
clean up) before the namespace they run in is removed, which SIGKILLs
whatever still runs there.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from banger_core.firecracker import FirecrackerClient
from banger_vmmkit.kernelcheck import KERNEL_LOADER_ERROR
from pytest_banger import wait_until
from pytest_banger.fcsim import raw_request, tiny_rootfs
from pytest_banger.kernels import (
    DEBIAN_CONFIG,
    FIRECRACKER_CONFIG,
    synthetic_initrd,
    synthetic_kernel,
)

from .conftest import NetnsHost, SimRunner
from .test_boot import BOOT_ARGS, tcp_probe

pytestmark = pytest.mark.net

# Devices only on PCI: no ACPI, no command-line MMIO devices.
PCI_ONLY = {**FIRECRACKER_CONFIG, "ACPI": "n", "VIRTIO_MMIO_CMDLINE_DEVICES": "n"}


def start_vm(
    sim: SimRunner,
    ns: NetnsHost,
    options: dict[str, str] | None = None,
    *,
    args: str = BOOT_ARGS,
    extra: tuple[str, ...] = (),
    initrd: Path | None = None,
    memory: int = 256,
    boot_script: str | None = None,
    kernel: Path | None = None,
) -> tuple[object, Path, FirecrackerClient]:
    img = tiny_rootfs(sim.tmp, boot_script) if boot_script else tiny_rootfs(sim.tmp)
    kernel = kernel or synthetic_kernel(sim.tmp / "kernel", options)
    tap = ns.add_tap("tap0")
    proc, sock = sim.start(None, *extra, netns=ns.name)
    client = FirecrackerClient(sock)
    client.put_machine_config(1, memory)
    client.put_boot_source(kernel, args, initrd_path=initrd)
    client.put_drive("rootfs", img, True, True)
    client.put_network_interface("net1", tap, "06:00:AC:10:00:02")
    client.put_vsock(3, sim.tmp / "v.sock")
    client.instance_start()
    sim.note_tokens()
    return proc, sock, client


def test_a_file_that_is_no_kernel_fails_instance_start(sim: SimRunner) -> None:
    junk = sim.tmp / "junk"
    junk.write_bytes(b"not really a kernel\n" * 100)
    _proc, sock = sim.start()
    assert (
        raw_request(sock, "PUT", "/boot-source", json.dumps({"kernel_image_path": str(junk)}))[0]
        == 204
    )
    status, _, body = raw_request(sock, "PUT", "/actions", '{"action_type":"InstanceStart"}')
    assert status == 400
    assert json.loads(body) == {"fault_message": KERNEL_LOADER_ERROR}
    assert json.loads(raw_request(sock, "GET", "/")[2])["state"] == "Not started"


def test_an_elf_vmlinux_boots(test_netns: NetnsHost, sim: SimRunner) -> None:
    elf = synthetic_kernel(sim.tmp / "vmlinux.elf", fmt="elf")
    start_vm(sim, test_netns, kernel=elf)
    wait_until(lambda: "tiny-boot: ready" in sim.console(), what="guest boot")


def test_undiscoverable_root_disk_leaves_a_stuck_guest(
    test_netns: NetnsHost, sim: SimRunner
) -> None:
    # Debian's kernel with an initrd lacking virtio_mmio: the initramfs never sees /dev/vda.
    initrd = synthetic_initrd(sim.tmp / "initrd", ["virtio_blk", "virtio_net"])
    proc, _sock, client = start_vm(sim, test_netns, DEBIAN_CONFIG, initrd=initrd)
    wait_until(lambda: "Dropping to a shell!" in sim.console(), what="initramfs shell")
    console = sim.console()
    assert "CONFIG_VIRTIO_MMIO=m but the initrd has no virtio_mmio module" in console
    assert "ALERT!  /dev/vda does not exist.  Dropping to a shell!" in console
    assert "tiny-boot" not in console
    assert client.get_instance_info().state == "Running"
    client.send_ctrl_alt_del()  # the initramfs shell does not reboot
    with pytest.raises(AssertionError):
        wait_until(lambda: proc.poll() is not None, timeout=1.5, what="exit")
    client.close()


def test_undiscoverable_root_disk_without_initrd_panics(
    test_netns: NetnsHost, sim: SimRunner
) -> None:
    proc, _sock, client = start_vm(
        sim, test_netns, PCI_ONLY, args=BOOT_ARGS.replace("panic=1", "panic=0")
    )
    wait_until(lambda: "Kernel panic" in sim.console(), what="panic")
    console = sim.console()
    assert "VFS: Unable to mount root fs on unknown-block(0,0)" in console
    assert "mmio cannot find its devices" in console  # the VMM log line says why
    assert proc.poll() is None  # panic=0: the kernel spins, the VMM keeps running
    client.close()


def test_panic_reboots_with_panic_1(test_netns: NetnsHost, sim: SimRunner) -> None:
    proc, _sock, _client = start_vm(sim, test_netns, PCI_ONLY)
    assert proc.wait(timeout=15) == 0  # type: ignore[attr-defined]
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in sim.console()


def test_enable_pci_puts_devices_on_pci(test_netns: NetnsHost, sim: SimRunner) -> None:
    start_vm(sim, test_netns, PCI_ONLY, extra=("--enable-pci",))
    wait_until(lambda: "tiny-boot: ready" in sim.console(), what="guest boot")
    assert "pci finds its devices" in sim.console()


def test_ip_arg_ignored_without_ip_pnp(test_netns: NetnsHost, sim: SimRunner) -> None:
    start_vm(sim, test_netns, {**FIRECRACKER_CONFIG, "IP_PNP": "n"})
    wait_until(lambda: "tiny-boot: ready" in sim.console(), what="guest boot")
    console = sim.console()
    assert "tiny-boot: hostname tinyhost" not in console  # ip= sets it only with IP_PNP
    assert "ip= ignored (no IP_PNP)" in console
    assert tcp_probe(test_netns, "172.30.0.2", 9) != "refused"  # no address: nobody answers


def _vsock_answer(path: Path, port: int) -> bytes | None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1.5)
        s.connect(str(path))
        s.sendall(f"CONNECT {port}\n".encode())
        try:
            return s.recv(64)
        except TimeoutError:
            return None


def test_vsock_only_when_the_kernel_has_it(test_netns: NetnsHost, sim: SimRunner) -> None:
    start_vm(sim, test_netns, {**FIRECRACKER_CONFIG, "VIRTIO_VSOCKETS": "n"})
    wait_until(lambda: "tiny-boot: ready" in sim.console(), what="guest boot")
    # Nothing answers (no guest driver activates the device), not even a close.
    assert _vsock_answer(sim.tmp / "v.sock", 5000) is None
    assert "vsock no" in sim.console()


MEMORY_SCRIPT = """#!/bin/sh
grow() { x=a; i=0; while [ $i -lt $1 ]; do x="$x$x"; i=$((i+1)); done; echo "${#x}"; }
echo "mem: small $(grow 20)"
if sh -c 'grow() { x=a; i=0; while [ $i -lt $1 ]; do x="$x$x"; i=$((i+1)); done; }; grow 27'
then echo "mem: big survived"; else echo "mem: big killed"; fi
echo "tiny-boot: ready"
while :; do sleep 0.1; done
"""


def test_guest_memory_is_limited_to_mem_size_mib(test_netns: NetnsHost, sim: SimRunner) -> None:
    from banger_fcsim import memcg

    proc, _sock, client = start_vm(sim, test_netns, memory=48, boot_script=MEMORY_SCRIPT)
    wait_until(lambda: "tiny-boot: ready" in sim.console(), timeout=60, what="guest boot")
    console = sim.console()
    if "guest memory is not limited" in console:
        pytest.skip("no memory cgroup on this host: " + console[-3000:])
    assert "mem: small 1048576" in console
    assert "mem: big killed" in console  # 128 MiB do not fit in 48
    line = next(line for line in console.splitlines() if "Guest memory: cgroup" in line)
    seen = Path(line.split("cgroup v")[1].split()[1])
    assert seen.name.startswith(memcg.GROUP_PREFIX) and "limit 48 MiB" in line
    # The simulator (under `ip netns exec`, which hides /sys/fs/cgroup) mounted the
    # hierarchy privately; the same group is visible here in the host's mount.
    rel = str(seen).split("/memcg/", 1)[1] if "/memcg/" in str(seen) else None
    host_path = Path("/sys/fs/cgroup/memory", rel) if rel else seen
    if host_path.parent.exists():
        assert host_path.is_dir()
        assert (host_path / "memory.limit_in_bytes").read_text().strip() == str(48 << 20)
    client.send_ctrl_alt_del()
    assert proc.wait(timeout=15) == 0  # type: ignore[attr-defined]
    wait_until(lambda: not host_path.exists(), what="cgroup removed")


NET_SCRIPT = """#!/bin/sh
while read -r line; do echo "net: $line"; done < /proc/net/dev
echo "tiny-boot: ready"
while :; do sleep 0.1; done
"""


def test_no_nic_without_virtio_net(test_netns: NetnsHost, sim: SimRunner) -> None:
    # The VMM still has its network device; a kernel without a driver never sees it.
    start_vm(sim, test_netns, {**FIRECRACKER_CONFIG, "VIRTIO_NET": "n"}, boot_script=NET_SCRIPT)
    wait_until(lambda: "tiny-boot: ready" in sim.console(), what="guest boot")
    console = sim.console()
    assert "virtio_net no" in console
    assert "net: lo:" in console
    assert "net: eth0:" not in console
