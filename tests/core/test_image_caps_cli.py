"""``image register`` / ``image show`` / ``doctor`` and the kernel's capabilities, via the CLI."""

from __future__ import annotations

from pathlib import Path

from pytest_banger.kernels import (
    DEBIAN_CONFIG,
    DEBIAN_INITRD_MODULES,
    config_text,
    synthetic_initrd,
    synthetic_kernel,
    synthetic_rootfs,
)


def _files(tmp: Path, options: dict[str, str] | None, modules: list[str]) -> dict[str, Path]:
    return {
        "kernel": synthetic_kernel(tmp / "vmlinuz", DEBIAN_CONFIG, embed_config=False),
        "initrd": synthetic_initrd(tmp / "initrd.img", modules),
        "rootfs": synthetic_rootfs(
            tmp / "rootfs.ext4", options, modules=["vmw_vsock_virtio_transport"]
        ),
    }


def _register(home, name: str, files: dict[str, Path], *extra: str):
    return home.run(
        "image",
        "register",
        name,
        "--kernel",
        str(files["kernel"]),
        "--rootfs",
        str(files["rootfs"]),
        "--initrd",
        str(files["initrd"]),
        *extra,
    )


def test_register_records_and_show_prints_capabilities(
    banger_home, banger_daemon, tmp_path: Path
) -> None:
    files = _files(tmp_path, DEBIAN_CONFIG, DEBIAN_INITRD_MODULES)
    res = _register(banger_home, "deb", files)
    assert res.returncode == 0, res.stderr
    shown = banger_home.run("image", "show", "deb")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "kernel capabilities:" in out
    assert "format:      elf (6.1.0-test-amd64)" in out
    assert "config:      rootfs /boot/config-6.1.0-test-amd64 (the kernel's release)" in out
    # No firecracker binary here: its version is unknown (taken as the released 1.16.1).
    assert "kernel fmt:  elf (Firecracker (version unknown) loads it)" in out
    assert "transports:  mmio-acpi, pci" in out
    assert "virtio_blk:  module (initrd)" in out
    assert "virtio_net:  module (initrd)" in out
    assert "vsock:       module (rootfs)" in out
    assert "ip_pnp:      no" in out
    caps = banger_home.run("image", "show", "deb", "--json").json()["kernel_caps"]
    assert caps["transports"] == ["mmio-acpi", "pci"] and caps["ip_pnp"] == "no"
    doctor = banger_home.run("doctor")
    line = next(ln for ln in doctor.stdout.splitlines() if "image deb kernel" in ln)
    assert line.startswith("ok")
    assert "transports mmio-acpi, pci" in line and "boots with mmio" in line
    assert "Firecracker (version unknown) loads elf" in line


def test_register_refuses_a_kernel_no_transport_can_boot(
    banger_home, banger_daemon, tmp_path: Path
) -> None:
    files = _files(tmp_path, {**DEBIAN_CONFIG, "PCI": "n"}, ["virtio_blk", "virtio_net"])
    res = _register(banger_home, "broken", files)
    assert res.returncode != 0
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "cannot boot on Firecracker" in err
    assert "CONFIG_VIRTIO_MMIO=m but the initrd has no virtio_mmio module" in err
    assert "pci: CONFIG_PCI is not set" in err
    assert banger_home.run("image", "list", "--json").json() == []


def test_register_refuses_a_file_that_is_no_kernel(
    banger_home, banger_daemon, tmp_path: Path
) -> None:
    files = _files(tmp_path, DEBIAN_CONFIG, DEBIAN_INITRD_MODULES)
    files["kernel"].write_bytes(b"not really a kernel\n")
    res = _register(banger_home, "junk", files)
    assert res.returncode != 0
    assert "neither an ELF vmlinux nor a bzImage" in res.stderr
    assert banger_home.run("image", "list", "--json").json() == []


def test_kernel_config_flag_and_unknown_capabilities(
    banger_home, banger_daemon, tmp_path: Path
) -> None:
    files = _files(tmp_path, None, DEBIAN_INITRD_MODULES)  # no /boot/config, no IKCONFIG
    assert _register(banger_home, "mystery", files).returncode == 0
    shown = banger_home.run("image", "show", "mystery").stdout
    assert "transports:  unknown" in shown and "ip_pnp:      unknown" in shown
    config = tmp_path / "my.config"
    config.write_text(config_text({**DEBIAN_CONFIG, "IP_PNP": "y"}))
    res = _register(banger_home, "told", files, "--kernel-config", str(config))
    assert res.returncode == 0, res.stderr
    shown = banger_home.run("image", "show", "told").stdout
    assert f"config:      {config}" in shown and "ip_pnp:      yes" in shown
