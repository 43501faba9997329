"""The QEMU command line banger-fcqemu builds (no QEMU needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from banger_fcqemu import accel
from banger_fcqemu.cmdline import (
    AGENT_PORT_NAME,
    DriveSpec,
    NicSpec,
    QemuConfig,
    build_argv,
    config_from_vmm,
    host_tsc_khz,
    kernel_cmdline,
    machine_arg,
)
from banger_fcqemu.guest import acpi_enabled
from banger_vmmkit.api import Vmm, VmmOptions
from banger_vmmkit.httpserver import Request
from banger_vmmkit.log import Logger


def option(argv: list[str], flag: str) -> list[str]:
    """Every value that follows ``flag`` in ``argv``."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def base(**kw) -> QemuConfig:
    cfg = dict(kernel="/k", cmdline="console=ttyS0 root=/dev/vda rw", qmp_socket="q")
    cfg.update(kw)
    return QemuConfig(**cfg)


def test_mmio_with_acpi_is_the_default_machine() -> None:
    argv = build_argv(base(drives=[DriveSpec("/root.ext4"), DriveSpec("/cfg", read_only=True)]))
    assert option(argv, "-M") == ["microvm,pit=on,pic=on,rtc=on,isa-serial=on,acpi=on,pcie=off"]
    assert option(argv, "-device")[:3] == [
        "i8042",
        "virtio-blk-device,drive=drive0",
        "virtio-blk-device,drive=drive1",
    ]
    drives = option(argv, "-drive")
    assert drives[0] == "file=/root.ext4,if=none,id=drive0,format=raw,cache=unsafe"
    assert drives[1].endswith(",readonly=on") and "file=/cfg," in drives[1]
    assert "-no-reboot" in argv and "-nodefaults" in argv
    assert option(argv, "-serial") == ["chardev:serial0"]
    assert "stdio,id=serial0,signal=off" in option(argv, "-chardev")


def test_without_acpi_devices_go_on_the_kernel_command_line() -> None:
    argv = build_argv(base(acpi=False, drives=[DriveSpec("/r")]))
    machine = option(argv, "-M")[0]
    assert "acpi=off" in machine and "auto-kernel-cmdline=on" in machine


def test_pci_uses_pci_devices_and_acpi() -> None:
    nic = NicSpec("tap0", "aa:bb:cc:dd:ee:ff")
    cfg = base(pci=True, acpi=False, drives=[DriveSpec("/r")], nics=[nic], agent_socket="a")
    argv = build_argv(cfg)
    assert "acpi=on,pcie=on" in option(argv, "-M")[0]
    devices = option(argv, "-device")
    assert "virtio-blk-pci,drive=drive0" in devices
    assert "virtio-net-pci,netdev=net0,mac=aa:bb:cc:dd:ee:ff" in devices
    assert "virtio-serial-pci" in devices
    assert not any(d.endswith("-device") or "-device," in d for d in devices if "virtio" in d)


def test_tap_opened_by_name_with_the_mac() -> None:
    argv = build_argv(base(nics=[NicSpec("bgtap3", "02:00:00:00:00:01"), NicSpec("bgtap4")]))
    assert option(argv, "-netdev") == [
        "tap,id=net0,ifname=bgtap3,script=no,downscript=no",
        "tap,id=net1,ifname=bgtap4,script=no,downscript=no",
    ]
    assert "virtio-net-device,netdev=net0,mac=02:00:00:00:00:01" in option(argv, "-device")
    assert "virtio-net-device,netdev=net1" in option(argv, "-device")


def test_vsock_becomes_a_virtio_serial_port() -> None:
    assert "virtio-serial-device" not in option(build_argv(base()), "-device")
    argv = build_argv(base(agent_socket="bgr-agent"))
    assert "socket,id=agent,path=bgr-agent,abstract=on,server=on,wait=off" in option(
        argv, "-chardev"
    )
    assert f"virtserialport,chardev=agent,name={AGENT_PORT_NAME}" in option(argv, "-device")


def test_qmp_on_an_abstract_socket() -> None:
    argv = build_argv(base(qmp_socket="bgr-qmp"))
    assert "socket,id=qmp,path=bgr-qmp,abstract=on,server=on,wait=off" in option(argv, "-chardev")
    assert option(argv, "-mon") == ["chardev=qmp,mode=control"]


def test_tcg_gets_clock_workarounds_kvm_does_not() -> None:
    tcg = option(build_argv(base(accel="tcg", tsc_khz=2596130)), "-append")[0]
    assert tcg == (
        "console=ttyS0 root=/dev/vda rw no_timer_check tsc=reliable lpj=5000000 "
        "tsc_early_khz=2596130"
    )
    kvm_argv = build_argv(base(accel="kvm"))
    assert option(kvm_argv, "-append") == ["console=ttyS0 root=/dev/vda rw"]
    assert option(kvm_argv, "-cpu") == ["host"] and option(kvm_argv, "-accel") == ["kvm"]


def test_user_boot_args_win_over_the_workarounds() -> None:
    assert kernel_cmdline("lpj=1 x", "tcg") == "lpj=1 x no_timer_check tsc=reliable"


def test_machine_size_initrd_and_kernel() -> None:
    argv = build_argv(base(vcpus=2, mem_mib=1024, initrd="/i"))
    assert option(argv, "-smp") == ["2"] and option(argv, "-m") == ["1024M"]
    assert option(argv, "-kernel") == ["/k"] and option(argv, "-initrd") == ["/i"]
    assert "-initrd" not in build_argv(base())


def test_machine_arg_never_pcie_without_acpi() -> None:
    assert "acpi=on" in machine_arg(base(pci=True, acpi=False))


def test_host_tsc_khz() -> None:
    assert host_tsc_khz("processor\t: 0\ncpu MHz\t\t: 2596.130\n") == 2596130
    assert host_tsc_khz("processor\t: 0\n") is None


def _vmm(tmp: Path) -> Vmm:
    vmm = Vmm(VmmOptions(instance_id="vm-7", enable_pci=False), Logger("vm-7"))
    (tmp / "vmlinux").write_bytes(b"k")
    (tmp / "root").write_bytes(b"r")
    (tmp / "cfg").write_bytes(b"c")

    def put(path: str, body: dict) -> None:
        resp = vmm.handle(Request("PUT", path, json.dumps(body).encode(), {}))
        assert resp.status == 204, resp.body

    put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 768})
    put("/boot-source", {"kernel_image_path": str(tmp / "vmlinux"), "boot_args": "console=ttyS0"})
    put("/drives/cfg", {"drive_id": "cfg", "path_on_host": str(tmp / "cfg"),
                        "is_root_device": False, "is_read_only": True})  # fmt: skip
    put("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": str(tmp / "root"),
                           "is_root_device": True})  # fmt: skip
    return vmm


def test_config_from_the_api_state(tmp_path: Path) -> None:
    vmm = _vmm(tmp_path)
    try:
        cfg = config_from_vmm(vmm, qmp_socket="q")
        assert (cfg.vcpus, cfg.mem_mib, cfg.name) == (2, 768, "vm-7")
        # Firecracker's order: the root drive first, whatever the PUT order.
        assert [d.path for d in cfg.drives] == [str(tmp_path / "root"), str(tmp_path / "cfg")]
        assert [d.read_only for d in cfg.drives] == [False, True]
        assert cfg.cmdline == "console=ttyS0 root=/dev/vda rw"
        assert cfg.initrd is None and not cfg.pci
    finally:
        vmm.close()


def test_acpi_setting() -> None:
    assert acpi_enabled("on") and acpi_enabled("") and not acpi_enabled("off")
    with pytest.raises(ValueError, match="BANGER_FCQEMU_ACPI"):
        acpi_enabled("maybe")


def test_accel_choice(tmp_path: Path) -> None:
    assert accel.choose_accel("tcg")[0] == "tcg"
    assert accel.choose_accel("kvm")[0] == "kvm"
    with pytest.raises(ValueError, match="expected one of auto, kvm, tcg"):
        accel.choose_accel("hvf")
    dev = tmp_path / "kvm"
    dev.write_text("")
    mods = tmp_path / "module"
    mods.mkdir()
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu vmx sse\n")
    assert accel.kvm_usable(str(dev), str(mods), str(cpuinfo))[0]
    (mods / "kvm_pvm").mkdir()
    ok, why = accel.kvm_usable(str(dev), str(mods), str(cpuinfo))
    assert not ok and "PVM" in why
    (mods / "kvm_pvm").rmdir()
    cpuinfo.write_text("flags\t\t: fpu sse hypervisor\n")
    assert not accel.kvm_usable(str(dev), str(mods), str(cpuinfo))[0]
    assert not accel.kvm_usable(str(tmp_path / "nope"), str(mods), str(cpuinfo))[0]
