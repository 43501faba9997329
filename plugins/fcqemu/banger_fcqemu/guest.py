"""The QEMU-backed guest: what ``InstanceStart`` boots in ``banger-fcqemu``.

Same interface as the simulator's :class:`banger_fcsim.guest.Guest`
(``start``, ``ctrl_alt_del``, ``pause``, ``resume``, ``teardown``, and the
``on_exit`` callback), so :class:`banger_vmmkit.main.Simulator` runs it
unchanged. QEMU is our child with ``PR_SET_PDEATHSIG=SIGKILL``: it never
outlives this process, even when this process is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from banger_core import system
from banger_fcqemu.accel import choose_accel
from banger_fcqemu.cmdline import QEMU_BINARY, build_argv, config_from_vmm, host_tsc_khz
from banger_fcqemu.qmp import QmpClient, QmpError, abstract_address
from banger_fcqemu.serialmux import SerialBridge
from banger_vmmkit import emulation

if TYPE_CHECKING:
    from banger_vmmkit.api import Vmm

PR_SET_PDEATHSIG = 1
QEMU_ENV = "BANGER_FCQEMU_QEMU"
ACPI_ENV = "BANGER_FCQEMU_ACPI"
EXIT_QEMU_FAILED = 1


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: SIGKILL this child when the process that forked it dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def acpi_enabled(value: str | None = None, *, default: bool = True) -> bool:
    """``BANGER_FCQEMU_ACPI``: describe virtio-mmio devices by ACPI.

    Unset, ``default`` decides: on when the emulated Firecracker has ACPI
    (v1.8+), off for v1.7 (MMIO devices only on the kernel command line).
    """
    raw = value if value is not None else os.environ.get(ACPI_ENV)
    if raw is None:
        return default
    raw = raw.strip().lower()
    if raw in ("on", "1", "true", "yes", ""):
        return True
    if raw in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"{ACPI_ENV}={raw!r}: expected on or off")


class QemuGuest:
    """One guest kernel running under ``qemu-system-x86_64``."""

    def __init__(self, vmm: Vmm, on_exit: Callable[..., None], api_sock: str) -> None:
        self.vmm = vmm
        self.on_exit = on_exit
        self.api_sock = api_sock
        self.log = vmm.logger
        self.token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.qmp_name = f"banger-fcqemu-{self.token}-qmp"
        self.agent_name = f"banger-fcqemu-{self.token}-agent"
        self.proc: Any = None  # Popen from system.spawn
        self.qmp: QmpClient | None = None
        self.bridge: SerialBridge | None = None
        self.argv: list[str] = []
        self.lock = threading.RLock()  # teardown may re-enter from a signal handler
        self.torn_down = False

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Start QEMU and attach to its QMP socket; raise with QEMU's words on failure.

        The kernel has passed the emulated Firecracker's loader
        (:func:`banger_vmmkit.kernelcheck.check_kernel_image`). QEMU boots that
        very file: a bzImage natively (main only), an ELF vmlinux through its
        PVH entry; an ELF without the PVH note (Firecracker would enter it at
        its 64-bit ``e_entry``) is refused, as QEMU cannot boot it.
        """
        from banger_vmmkit.api import ApiError

        loaded = self.vmm.loaded_kernel
        if loaded is not None and loaded.format == "elf" and loaded.pvh_entry is None:
            assert self.vmm.boot_source is not None
            raise ApiError(
                "Start microvm error: banger-fcqemu cannot boot the ELF kernel "
                f"{self.vmm.boot_source['kernel_image_path']}: it has no PVH entry note "
                "(XEN_ELFNOTE_PHYS32_ENTRY, CONFIG_PVH=y), and QEMU enters an ELF vmlinux "
                "only through PVH"
            )
        accel, why = choose_accel()
        has_vsock = self.vmm.vsock is not None and self.vmm.vsock.listener is not None
        cfg = config_from_vmm(
            self.vmm,
            accel=accel,
            acpi=acpi_enabled(default=emulation.has_acpi(self.vmm.opts.version)),
            qmp_socket=self.qmp_name,
            agent_socket=self.agent_name if has_vsock else None,
            qemu=os.environ.get(QEMU_ENV) or QEMU_BINARY,
            tsc_khz=host_tsc_khz() if accel == "tcg" else None,
        )
        self.argv = build_argv(cfg)
        self.log.info(f"Accelerator: {accel} ({why}).", "fc_vmm")
        self.log.info(f"QEMU command line: {shlex.join(self.argv)}", "fc_vmm")
        # QEMU opens each TAP by name; a (non multi-queue) TAP takes one opener, so
        # the API layer's fd (opened at PUT time, as Firecracker does) is handed back.
        for nic in self.vmm.nets:
            if nic.tap_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(nic.tap_fd)
                nic.tap_fd = None
        serial = self.vmm.serial_fd if self.vmm.serial_fd is not None else 1
        self.proc = system.spawn(
            self.argv,
            stdout=serial,
            stderr=2,
            # Its own process group: a signal to ours (a terminal's Ctrl-C, `timeout`)
            # reaches this process, which then ends QEMU; QEMU must not see it first
            # and exit 0 as if the guest had rebooted. It still dies with us (PDEATHSIG).
            new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        try:
            self.qmp = QmpClient(abstract_address(self.qmp_name)).connect(
                wait=10.0, alive=lambda: self.proc.poll() is None
            )
        except QmpError as exc:
            code = self._stop_qemu()
            raise RuntimeError(f"QEMU did not start (exit status {code}): {exc}") from None
        threading.Thread(target=self._wait_exit, name="qemu-wait", daemon=True).start()
        if has_vsock:
            assert self.vmm.vsock is not None and self.vmm.vsock.listener is not None
            self.bridge = SerialBridge(
                self.vmm.vsock.listener,
                self._connect_agent_port,
                log=lambda m: self.log.info(m, "fc_vmm"),
            )
            self.bridge.start()

    def _connect_agent_port(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + 10
        while True:
            try:
                sock.connect(abstract_address(self.agent_name))
                return sock
            except OSError:
                if time.monotonic() >= deadline or self.proc.poll() is not None:
                    sock.close()
                    raise
                time.sleep(0.02)

    def _wait_exit(self) -> None:
        code = self.proc.wait()
        if self.torn_down:
            return
        if code == 0:
            self.log.info("QEMU exited: the guest rebooted or powered off.", "fc_vmm")
            self.on_exit(0)
        else:
            self.log.error(f"QEMU exited with status {code}.", "fc_vmm")
            self.on_exit(0, EXIT_QEMU_FAILED)

    # ------------------------------------------------------------------ runtime

    def _qmp(self, command: str, arguments: dict[str, Any] | None = None) -> None:
        if self.qmp is None:
            return
        try:
            self.qmp.execute(command, arguments)
        except QmpError as exc:
            self.log.error(f"QMP {command} failed: {exc}", "fc_vmm")

    def ctrl_alt_del(self) -> None:
        """Press Ctrl-Alt-Del on the guest's i8042 keyboard (as Firecracker does)."""
        if self.qmp is None:
            return
        try:
            self.qmp.send_ctrl_alt_del()
        except QmpError as exc:
            self.log.error(f"QMP send-key failed: {exc}", "fc_vmm")

    def pause(self) -> None:
        """Stop the vCPUs (QMP ``stop``)."""
        self._qmp("stop")

    def resume(self) -> None:
        """Resume the vCPUs (QMP ``cont``)."""
        self._qmp("cont")

    # ------------------------------------------------------------------ teardown

    def _stop_qemu(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)
        code: int | None = proc.poll()
        return code

    def teardown(self) -> None:
        """Kill QEMU and stop the bridge (idempotent, safe from a signal handler)."""
        with self.lock:
            if self.torn_down:
                return
            self.torn_down = True
        self._stop_qemu()
        if self.bridge is not None:
            self.bridge.stop()
        if self.qmp is not None:
            self.qmp.close()
