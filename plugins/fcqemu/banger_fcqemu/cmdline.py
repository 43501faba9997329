"""The ``qemu-system-x86_64`` command line for one Firecracker-configured VM.

Pure functions: :func:`config_from_vmm` reads what the API layer collected,
:func:`build_argv` turns it into argv. The machine mirrors Firecracker's:

* ``-M microvm`` with the legacy devices Firecracker has (PIT, PIC, RTC, one
  8250 UART as ttyS0, an i8042 for Ctrl-Alt-Del) and its virtio-mmio devices
  described through ACPI (Firecracker since its x86 ACPI support), or with
  ``acpi=off`` announced as ``virtio_mmio.device=`` on the kernel command
  line (QEMU's ``auto-kernel-cmdline``, what older Firecracker did);
* with ``--enable-pci``: microvm with a PCIe host bridge (ACPI on) and
  ``virtio-*-pci`` devices;
* drives in Firecracker's order (root first) as virtio-blk, read-only when
  asked; each TAP opened by name as virtio-net with the configured MAC;
* the serial console on QEMU's stdout; QMP on an abstract Unix socket;
  ``-no-reboot`` so a guest reboot (``reboot=k``) ends the process, as
  Firecracker exits on a guest reboot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

QEMU_BINARY = "qemu-system-x86_64"
AGENT_PORT_NAME = "banger.agent"
"""Name of the virtio-serial port the guest agent listens on."""

TCG_BOOT_ARGS = ["no_timer_check", "tsc=reliable", "lpj=5000000"]
"""Appended under TCG: without a PIT/HPET reference the kernel cannot calibrate the TSC
and hangs after "tsc: Marking TSC unstable" (PROBES.md). Plus ``tsc_early_khz=``
(:func:`host_tsc_khz`): the PIT calibration is timing-sensitive and fails on a
loaded host, after which the boot hangs even with the arguments above."""

CACHE_MODES = {"Unsafe": "unsafe", "Writeback": "writeback"}


@dataclass
class DriveSpec:
    """One virtio-blk drive."""

    path: str
    read_only: bool = False
    cache: str = "Unsafe"


@dataclass
class NicSpec:
    """One virtio-net device on a host TAP."""

    tap: str
    mac: str | None = None


@dataclass
class QemuConfig:
    """Everything the QEMU command line is built from."""

    kernel: str
    cmdline: str
    vcpus: int = 1
    mem_mib: int = 128
    initrd: str | None = None
    accel: str = "tcg"
    pci: bool = False
    acpi: bool = True
    drives: list[DriveSpec] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)
    qmp_socket: str = ""
    """Abstract Unix socket name (no leading NUL) QEMU serves QMP on."""
    agent_socket: str | None = None
    """Abstract socket name of the agent's virtio-serial port; None = no vsock device."""
    name: str = "banger"
    qemu: str = QEMU_BINARY
    tsc_khz: int | None = None
    """Under TCG: the guest's TSC rate (``tsc_early_khz=``), normally the host's."""


def host_tsc_khz(cpuinfo: str | None = None) -> int | None:
    """The host's TSC rate in kHz, from ``/proc/cpuinfo``'s ``cpu MHz`` (None if unknown).

    Under TCG the guest's TSC is the host's (QEMU reads the host TSC), so the
    guest can be told its rate instead of measuring it.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as fh:
                cpuinfo = fh.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            try:
                return int(float(value) * 1000)
            except ValueError:
                return None
    return None


def kernel_cmdline(base: str, accel: str, tsc_khz: int | None = None) -> str:
    """The guest command line: ``base`` plus the TCG workarounds when emulating."""
    words = base.split()
    if accel == "tcg":
        extra = list(TCG_BOOT_ARGS)
        if tsc_khz:
            extra.append(f"tsc_early_khz={tsc_khz}")
        keys = {w.partition("=")[0] for w in words}
        words += [w for w in extra if w.partition("=")[0] not in keys]
    return " ".join(words)


def _virtio(kind: str, pci: bool) -> str:
    return f"virtio-{kind}-pci" if pci else f"virtio-{kind}-device"


def _onoff(flag: bool) -> str:
    return "on" if flag else "off"


def machine_arg(cfg: QemuConfig) -> str:
    """The ``-M`` value."""
    acpi = cfg.acpi or cfg.pci  # microvm's PCIe host bridge is described by ACPI
    opts = [
        "microvm",
        "pit=on",
        "pic=on",
        "rtc=on",
        "isa-serial=on",
        f"acpi={_onoff(acpi)}",
        f"pcie={_onoff(cfg.pci)}",
    ]
    if not acpi:
        # Firecracker without ACPI announces its virtio-mmio devices on the kernel
        # command line; QEMU does the same with auto-kernel-cmdline (default on).
        opts.append("auto-kernel-cmdline=on")
    return ",".join(opts)


def build_argv(cfg: QemuConfig) -> list[str]:
    """The full QEMU argv for ``cfg``."""
    cpu = "host" if cfg.accel == "kvm" else "max"
    argv = [
        cfg.qemu,
        "-name", cfg.name,
        "-M", machine_arg(cfg),
        "-accel", cfg.accel,
        "-cpu", cpu,
        "-smp", str(cfg.vcpus),
        "-m", f"{cfg.mem_mib}M",
        "-nodefaults", "-no-user-config", "-display", "none",
        "-no-reboot",
        "-chardev", "stdio,id=serial0,signal=off",
        "-serial", "chardev:serial0",
        "-device", "i8042",
        "-chardev", f"socket,id=qmp,path={cfg.qmp_socket},abstract=on,server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-kernel", cfg.kernel,
    ]  # fmt: skip
    if cfg.initrd:
        argv += ["-initrd", cfg.initrd]
    argv += ["-append", kernel_cmdline(cfg.cmdline, cfg.accel, cfg.tsc_khz)]
    for index, drive in enumerate(cfg.drives):
        opts = [
            f"file={drive.path}",
            "if=none",
            f"id=drive{index}",
            "format=raw",
            f"cache={CACHE_MODES.get(drive.cache, 'unsafe')}",
        ]
        if drive.read_only:
            opts.append("readonly=on")
        argv += ["-drive", ",".join(opts)]
        argv += ["-device", f"{_virtio('blk', cfg.pci)},drive=drive{index}"]
    for index, nic in enumerate(cfg.nics):
        argv += ["-netdev", f"tap,id=net{index},ifname={nic.tap},script=no,downscript=no"]
        dev = f"{_virtio('net', cfg.pci)},netdev=net{index}"
        if nic.mac:
            dev += f",mac={nic.mac}"
        argv += ["-device", dev]
    if cfg.agent_socket is not None:
        argv += [
            "-chardev",
            f"socket,id=agent,path={cfg.agent_socket},abstract=on,server=on,wait=off",
            "-device", _virtio("serial", cfg.pci),
            "-device", f"virtserialport,chardev=agent,name={AGENT_PORT_NAME}",
        ]  # fmt: skip
    return argv


def config_from_vmm(vmm: Any, **extra: Any) -> QemuConfig:
    """A :class:`QemuConfig` from the API layer's state (``banger_vmmkit.api.Vmm``).

    ``extra`` sets the fields the API does not know (accel, acpi, sockets, ...).
    """
    assert vmm.boot_source is not None
    drives = [
        DriveSpec(d.path, d.read_only, d.config.get("cache_type") or "Unsafe") for d in vmm.drives
    ]
    nics = [NicSpec(n.config["host_dev_name"], n.config.get("guest_mac")) for n in vmm.nets]
    return QemuConfig(
        kernel=vmm.boot_source["kernel_image_path"],
        initrd=vmm.boot_source.get("initrd_path"),
        cmdline=vmm.kernel_cmdline(),
        vcpus=int(vmm.machine["vcpu_count"]),
        mem_mib=int(vmm.machine["mem_size_mib"]),
        pci=bool(vmm.opts.enable_pci),
        drives=drives,
        nics=nics,
        name=vmm.opts.instance_id,
        **extra,
    )
