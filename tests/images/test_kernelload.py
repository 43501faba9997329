"""The kernel loader ported from linux-loader, per emulated Firecracker version.

Upstream sources (cited in docs/simulator.md): linux-loader ``src/loader/elf/mod.rs`` and
``src/loader/bzimage/mod.rs`` @ v0.13.2 / v0.14.0, ``src/loader/mod.rs`` @ v0.10.0 and
v0.13.2; Firecracker ``src/vmm/src/builder.rs`` @ v1.7.0 / v1.8.0 and
``src/vmm/src/arch/x86_64/mod.rs`` @ v1.13.0 / v1.16.1 / main (``load_kernel``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from banger_core.images import kernelload
from banger_core.images.kernelload import KernelLoadError, load
from pytest_banger.kernels import (
    KERNEL_PADDR,
    LOADER_RULES,
    PVH_ENTRY,
    synthetic_kernel,
)

PREFIX_116 = (
    "Start microvm error: System configuration error: Cannot load kernel due to invalid "
    "memory configuration or invalid kernel image: Kernel Loader: "
)


def test_valid_elf_loads_with_its_pvh_entry_on_every_version(tmp_path: Path) -> None:
    kernel = synthetic_kernel(tmp_path / "vmlinux")
    for version in ("1.7", "1.8", "1.13", "1.16.1", "main"):
        loaded = load(kernel, version=version, mem_size_mib=128)
        assert (loaded.format, loaded.protocol, loaded.entry) == ("elf", "PvhBoot", PVH_ENTRY)
    plain = load(synthetic_kernel(tmp_path / "nopvh", pvh=False))
    assert (plain.protocol, plain.entry, plain.pvh_entry) == ("LinuxBoot", KERNEL_PADDR, None)


@pytest.mark.parametrize("rule", [r for r in LOADER_RULES if r.startswith("elf-")])
def test_each_elf_rule_refuses_with_upstreams_text(tmp_path: Path, rule: str) -> None:
    kernel = synthetic_kernel(tmp_path / "vmlinux", broken=rule)
    with pytest.raises(KernelLoadError) as err:
        load(kernel, version="1.16.1", mem_size_mib=128)
    assert err.value.reason == LOADER_RULES[rule]
    assert (
        str(err.value)
        == f"{PREFIX_116}failed to load ELF kernel image: Kernel Loader: " + (LOADER_RULES[rule])
    )


@pytest.mark.parametrize("rule", [r for r in LOADER_RULES if r.startswith("bzimage-")])
def test_each_bzimage_rule_refuses_on_main(tmp_path: Path, rule: str) -> None:
    kernel = synthetic_kernel(tmp_path / "bzImage", fmt="bzimage", broken=rule)
    with pytest.raises(KernelLoadError) as err:
        load(kernel, version="main", mem_size_mib=128)
    reason = LOADER_RULES[rule]
    assert err.value.reason == reason
    if reason == "bzImage does not provide a 64-bit entry point":
        expected = f"Start microvm error: System configuration error: {reason}"
    elif reason == "invalid kernel start address":
        expected = f"{PREFIX_116}{reason}"
    else:
        expected = f"{PREFIX_116}failed to load bzImage kernel image: Kernel Loader: {reason}"
    assert str(err.value) == expected


def test_released_versions_refuse_a_bzimage_main_loads_it(tmp_path: Path) -> None:
    kernel = synthetic_kernel(tmp_path / "bzImage", fmt="bzimage")
    assert load(kernel, version="main").format == "bzimage"
    assert load(kernel, version="1.17.0-dev").format == "bzimage"
    with pytest.raises(KernelLoadError) as err:
        load(kernel, version="1.16.1")
    assert str(err.value) == (
        f"{PREFIX_116}failed to load ELF kernel image: Kernel Loader: Invalid Elf magic number"
    )
    with pytest.raises(KernelLoadError) as err13:
        load(kernel, version="1.13")
    assert str(err13.value) == str(err.value)
    # linux-loader v0.10/v0.11 (Firecracker 1.7/1.8) print no inner error and no
    # "System configuration error" layer (the error lived in builder.rs then).
    for old in ("1.7", "1.8.0"):
        with pytest.raises(KernelLoadError) as err:
            load(kernel, version=old)
        assert str(err.value) == (
            "Start microvm error: Cannot load kernel due to invalid memory configuration or "
            "invalid kernel image: Kernel Loader: failed to load ELF kernel image"
        )


def test_segments_must_fit_in_guest_memory(tmp_path: Path) -> None:
    kernel = synthetic_kernel(tmp_path / "vmlinux")  # loads at 16 MiB
    assert load(kernel, mem_size_mib=17).format == "elf"
    with pytest.raises(KernelLoadError, match="Unable to read kernel image"):
        load(kernel, mem_size_mib=16)


def test_check_vmlinux_adds_class_and_machine(tmp_path: Path) -> None:
    """linux-loader ignores EI_CLASS and e_machine; banger's own check does not."""
    good = synthetic_kernel(tmp_path / "vmlinux")
    assert kernelload.check_vmlinux(good).format == "elf"
    data = bytearray(good.read_bytes())
    data[4] = 1  # ELFCLASS32
    (tmp_path / "elf32").write_bytes(data)
    with pytest.raises(KernelLoadError, match="ELF class 1 is not ELFCLASS64"):
        kernelload.check_vmlinux(tmp_path / "elf32")
    load(tmp_path / "elf32")  # Firecracker itself would not notice
    data = bytearray(good.read_bytes())
    struct.pack_into("<H", data, 18, 183)  # EM_AARCH64
    (tmp_path / "arm").write_bytes(data)
    with pytest.raises(KernelLoadError, match="ELF machine 183 is not x86-64"):
        kernelload.check_vmlinux(tmp_path / "arm")


@pytest.mark.parametrize(
    ("given", "profile"),
    [
        ("1.16.1", "1.16.1"),
        ("v1.16.1", "1.16.1"),
        ("1.9.0", "1.8.0"),
        ("1.13", "1.13.0"),
        ("1.16.0", "1.13.0"),
        ("main", "1.17.0-dev"),
        ("1.17.0-dev", "1.17.0-dev"),
        (None, "1.16.1"),
    ],
)
def test_version_profiles(given: str | None, profile: str) -> None:
    assert kernelload.profile(given).version == profile


@pytest.mark.parametrize("bad", ["0.9", "1.6.0", "latest", "1", ""])
def test_unknown_version_is_one_clear_line(bad: str) -> None:
    with pytest.raises(ValueError, match=r"is not one banger emulates \(1\.7 or later"):
        kernelload.profile(bad or "x")
