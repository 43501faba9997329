"""Booting a VM: configure the VMM through its API, wait for SSH, stop it."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from loguru import logger

from banger_core.errors import BangerError, CancelledError
from banger_core.firecracker.client import FirecrackerClient
from banger_core.firecracker.launcher import (
    VMMProcess,
    find_vmm_pid,
    launch_vmm,
    pid_alive,
    remove_stale_socket,
    wait_for_exit,
)
from banger_core.lifecycle.machine import MachineSpec
from banger_core.lifecycle.vm import VM

BASE_BOOT_ARGS = ["console=ttyS0", "reboot=k", "panic=1", "pci=off"]
GUEST_STUCK_MARKERS = ("Kernel panic - not syncing", "Dropping to a shell!")
"""Console lines after which a guest never comes up (kernel panic, initramfs shell)."""


def console_tail(vm: VM, lines: int = 5) -> str:
    """The last lines of the serial console, for error messages (printable, bounded)."""
    from banger_core.lifecycle.console import tail_lines

    return " | ".join(tail_lines(vm.console_log, lines))


def boot_vmm(
    vm: VM,
    machine: MachineSpec,
    binary: str,
    *,
    start_timeout: float,
    extra_env: dict[str, str] | None = None,
) -> VMMProcess:
    """Launch the VMM for ``vm`` and boot ``machine``; kill it again on failure.

    A machine on the PCI transport gets ``--enable-pci``.
    """
    vm.run_dir.mkdir(parents=True, exist_ok=True)
    vm.vmm_log.touch()
    extra_args = ["--enable-pci"] if machine.transport == "pci" else None
    proc = launch_vmm(
        binary,
        vm.api_sock,
        f"banger-{vm.id}",
        log_path=vm.vmm_log,
        console_path=vm.console_log,
        extra_env=extra_env,
        extra_args=extra_args,
        start_timeout=start_timeout,
    )
    try:
        with FirecrackerClient(vm.api_sock, timeout=10.0) as api:
            api.put_logger(
                log_path=vm.vmm_log, level="Info", show_level=True, show_log_origin=False
            )
            api.put_machine_config(vcpu_count=machine.vcpus, mem_size_mib=machine.memory_mib)
            api.put_boot_source(
                machine.kernel, boot_args=machine.boot_args_string(), initrd_path=machine.initrd
            )
            for drive in machine.ordered_drives():
                api.put_drive(
                    drive.drive_id,
                    drive.path,
                    is_root_device=drive.is_root,
                    is_read_only=drive.read_only,
                )
            for nic in machine.nics:
                api.put_network_interface(nic.iface_id, nic.tap, guest_mac=nic.mac)
            if machine.vsock is not None:
                api.put_vsock(machine.vsock.guest_cid, machine.vsock.uds_path)
            api.instance_start()
    except BaseException:
        kill_vmm(vm, proc.pid)
        raise
    return proc


def guest_stuck(vm: VM) -> str | None:
    """The console line showing the guest will never come up, if there is one."""
    try:
        with open(vm.console_log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 65536))
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if any(marker in line for marker in GUEST_STUCK_MARKERS):
            from banger_core.lifecycle.console import printable

            return printable(line.strip())
    return None


def _not_up(vm: VM, why: str) -> BangerError:
    return BangerError(
        f"VM {vm.name} did not come up (stage: waiting for SSH): {why}; "
        f"last console lines: {console_tail(vm) or '(empty)'}; "
        f"full console: {vm.console_log}"
    )


def wait_for_ssh(vm: VM, pid: int, timeout: float, cancelled: Any = None) -> float:
    """Wait until the guest's sshd sends its banner; return seconds waited.

    Fails at once when the VMM exits or the console shows the guest cannot
    boot (a kernel panic, an initramfs shell), else after ``timeout``; the
    error names the stage and carries the console's last lines.
    """
    start = time.monotonic()
    deadline = start + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if cancelled is not None and cancelled():
            raise CancelledError(f"waiting for SSH on {vm.name} cancelled")
        if not pid_alive(pid):
            raise _not_up(vm, "the VMM exited during boot")
        stuck = guest_stuck(vm)
        if stuck:
            raise _not_up(vm, f"the guest cannot boot ({stuck})")
        try:
            with socket.create_connection((vm.ip, 22), timeout=1.0) as sock:
                sock.settimeout(2.0)
                banner = sock.recv(64)
                if banner.startswith(b"SSH-"):
                    return time.monotonic() - start
                last = f"unexpected banner {banner[:20]!r}"
        except OSError as exc:
            last = exc.strerror or str(exc)
        time.sleep(0.1)
    raise _not_up(vm, f"SSH on {vm.ip}:22 not ready after {timeout:.0f}s ({last})")


def live_pid(vm: VM) -> int | None:
    """The VMM's PID if it runs: the stored one, else rediscovered by API socket."""
    if vm.pid and pid_alive(vm.pid) and _cmdline_has(vm.pid, str(vm.api_sock)):
        return vm.pid
    return find_vmm_pid(vm.api_sock)


def _cmdline_has(pid: int, needle: str) -> bool:
    try:
        return needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def request_shutdown(vm: VM) -> bool:
    """Send Ctrl-Alt-Del; False when the API does not answer."""
    try:
        with FirecrackerClient(vm.api_sock, timeout=2.0) as api:
            api.send_ctrl_alt_del()
        return True
    except BangerError as exc:
        logger.warning("Ctrl-Alt-Del to {} failed: {}", vm.name, exc)
        return False


def kill_vmm(vm: VM, pid: int | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal the VMM (SIGKILL if it outlives ``timeout``) and wait; remove its sockets.

    Firecracker dies on SIGTERM at once; the simulator also removes its
    namespaces and loop devices first, so SIGTERM is the default.
    """
    if pid and pid_alive(pid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        if not wait_for_exit(pid, timeout) and sig != signal.SIGKILL:
            os.kill(pid, signal.SIGKILL)
            wait_for_exit(pid, timeout)
    remove_stale_socket(vm.api_sock)
    vm.vsock_path.unlink(missing_ok=True)
