"""Image build pipeline with a fake mmdebstrap (fast), and the real build (slow)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from banger_core import system
from banger_core.errors import BangerError, CancelledError, CommandError, NotFoundError
from banger_core.images import kernelload
from banger_core.images.artifacts import ArtifactCollector
from banger_core.images.build import (
    STAGES,
    BuiltImage,
    build_image,
    host_apt_sources,
    read_image,
)
from banger_core.images.recipe import default_recipe
from pytest_banger.kernels import synthetic_kernel

from .fakes import RECIPE, FakeRunner

needs_e2fs = pytest.mark.skipif(
    not (system.which("mkfs.ext4") and system.which("debugfs")), reason="needs e2fsprogs"
)


def debugfs(image: Path, request: str) -> str:
    return system.run(["debugfs", "-R", request, str(image)]).stdout


def installed_artifacts() -> tuple[ArtifactCollector, str]:
    """The installed plugins' artifact maker (the workdisk plugin's work seed)."""
    from banger_core.config import load_settings
    from banger_core.plugins import Hooks, get_plugin_manager

    hooks = Hooks(get_plugin_manager())
    if "workdisk" not in [i.plugin_name for i in hooks.impls("banger_image_artifacts")]:
        pytest.skip("the workdisk plugin is not installed")
    settings = load_settings(hooks.config_defaults(), files=[])
    collector = ArtifactCollector(hooks, settings, {"name": "fake", "os": "debian"})
    return collector, ",".join(collector.providers())


def provisioned_files() -> list[Any]:
    """The installed plugins' provisioning steps (the vsock plugin's guest agent)."""
    from banger_core.plugins import Hooks, get_plugin_manager

    hooks = Hooks(get_plugin_manager())
    if "vsock" not in [i.plugin_name for i in hooks.impls("banger_image_provision")]:
        pytest.skip("the vsock plugin is not installed")
    steps: list[Any] = []
    hooks.image_provision({"name": "fake", "os": "debian"}, steps)
    return [f for step in steps for f in step.installed_files()]


@needs_e2fs
def test_build_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "img"
    stages: list[str] = []
    runner = FakeRunner()
    maker, providers = installed_artifacts()
    image = build_image(
        RECIPE,
        out,
        on_stage=stages.append,
        runner=runner,
        extra_files=provisioned_files(),
        artifacts=maker,
        fingerprint_extra=providers,
    )
    assert stages == list(STAGES)
    mm = runner.calls[0]
    assert mm[0] == "mmdebstrap"
    assert "--variant=minbase" in mm and "--include=openssh-server,python3" in mm
    positional = [a for a in mm[1:] if not a.startswith("-")]
    assert positional[0] == "bookworm"  # suite, target, then only the host's sources files
    assert positional[2:] == host_apt_sources("bookworm")
    assert not any("://" in a for a in mm)
    assert sorted(p.name for p in out.iterdir()) == [
        "image.json",
        "initrd.img",
        "rootfs.ext4",
        "vmlinux",
        "work-seed.ext4",
    ]
    # The ELF vmlinux inside /boot's LZ4 bzImage, and it loads on Firecracker 1.16.1.
    elf = synthetic_kernel(tmp_path / "elf", version="6.1.0-10-cloud-amd64")
    assert image.kernel.read_bytes() == elf.read_bytes()
    assert kernelload.load(image.kernel, version="1.16.1").protocol == "PvhBoot"
    assert image.initrd is not None and image.initrd.read_bytes() == b"new initrd"
    assert image.kernel_version == "6.1.0-10-cloud-amd64"
    assert image.fingerprint != RECIPE.fingerprint()  # which plugins add artifacts counts
    assert image.artifacts == {"work-seed": out / "work-seed.ext4"}
    assert image.size_bytes == 64 * 1024 * 1024
    assert read_image(out) == image
    meta = json.loads((out / "image.json").read_text())
    assert meta["rootfs"] == "rootfs.ext4" and meta["recipe_name"] == "fake"

    assert "banger-boot" in debugfs(image.rootfs, "ls /usr/lib/banger")
    etc_ssh = debugfs(image.rootfs, "ls /etc/ssh")
    assert "ssh_host_" not in etc_ssh
    assert "50-banger.conf" in debugfs(image.rootfs, "ls /etc/ssh/sshd_config.d")
    assert "buildhost" not in debugfs(image.rootfs, "cat /etc/hostname")
    assert "/run/banger/resolv.conf" in debugfs(image.rootfs, "stat /etc/resolv.conf")
    wants = debugfs(image.rootfs, "ls /etc/systemd/system/multi-user.target.wants")
    # banger-boot is the core's; the agent and its unit come from the vsock plugin's steps.
    assert "banger-boot.service" in wants and "banger-agent.service" in wants
    assert "banger-agent" in debugfs(image.rootfs, "ls /usr/lib/banger")
    root_ls = debugfs(image.rootfs, "ls /root").split()
    assert ".bashrc" not in root_ls
    seed_ls = debugfs(image.work_seed, "ls /").split()
    assert ".bashrc" in seed_ls and ".ssh" in seed_ls
    assert "Mode:  0700" in debugfs(image.work_seed, "stat /")
    label = system.run(["dumpe2fs", "-h", str(image.work_seed)]).stdout
    assert "banger-work" in label


@needs_e2fs
def test_without_artifact_plugins_root_stays_in_the_rootfs(tmp_path: Path) -> None:
    """Disabling the workdisk plugin removes the work seed cleanly: /root stays in the image."""
    out = tmp_path / "img"
    image = build_image(RECIPE, out, runner=FakeRunner())
    assert image.artifacts == {} and image.work_seed is None
    assert image.fingerprint == RECIPE.fingerprint()
    assert sorted(p.name for p in out.iterdir()) == [
        "image.json",
        "initrd.img",
        "rootfs.ext4",
        "vmlinux",
    ]
    assert ".bashrc" in debugfs(image.rootfs, "ls /root").split()
    assert read_image(out) == image


@needs_e2fs
@pytest.mark.parametrize("failing", ["mmdebstrap", "mkfs.ext4", "debugfs"])
def test_failed_build_leaves_nothing(tmp_path: Path, failing: str) -> None:
    out = tmp_path / "img"
    maker, providers = installed_artifacts()  # debugfs: the work seed's root mode
    with pytest.raises(CommandError):
        build_image(
            RECIPE,
            out,
            runner=FakeRunner(fail=failing),
            artifacts=maker,
            fingerprint_extra=providers,
        )
    assert list(out.iterdir()) == []
    with pytest.raises(NotFoundError):
        read_image(out)


@needs_e2fs
def test_cancelled_build_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "img"
    cancel = threading.Event()

    def on_stage(name: str) -> None:
        if name == "kernel":
            cancel.set()

    with pytest.raises(CancelledError, match="cancelled before artifacts"):
        build_image(RECIPE, out, runner=FakeRunner(), cancel=cancel, on_stage=on_stage)
    assert list(out.iterdir()) == []


def test_build_without_kernel_fails_clearly(tmp_path: Path) -> None:
    class NoKernel(FakeRunner):
        def __call__(self, argv: Sequence[str], **kw: object) -> system.Result:
            result = super().__call__(argv, **kw)  # type: ignore[arg-type]
            if argv[0] == "mmdebstrap":
                target = [a for a in argv[1:] if not a.startswith("-")][1]
                for k in Path(target, "boot").iterdir():
                    k.unlink()
            return result

    with pytest.raises(BangerError, match="no kernel in the image"):
        build_image(RECIPE, tmp_path / "img", runner=NoKernel())
    assert list((tmp_path / "img").iterdir()) == []


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ({"broken": "elf-phentsize"}, "its vmlinux does not load: .*Invalid program header size"),
        ({"broken": "bzimage-magic"}, "is not a kernel image"),
        ({"fmt": "elf", "broken": "elf-entry"}, "does not load on Firecracker: .*entry address"),
    ],
)
def test_build_refuses_a_kernel_firecracker_cannot_load(
    tmp_path: Path, kernel: dict[str, str], expected: str
) -> None:
    """The exported vmlinux is checked with the ported loader before anything is published."""

    class BadKernel(FakeRunner):
        def __call__(self, argv: Sequence[str], **kw: object) -> system.Result:
            result = super().__call__(argv, **kw)  # type: ignore[arg-type]
            if argv[0] == "mmdebstrap":
                target = [a for a in argv[1:] if not a.startswith("-")][1]
                boot = Path(target, "boot")
                for k in boot.glob("vmlinuz-*"):
                    k.unlink()
                synthetic_kernel(
                    boot / "vmlinuz-6.1.0-10-cloud-amd64", **{"fmt": "bzimage", **kernel}
                )
            return result

    with pytest.raises(BangerError, match=expected):
        build_image(RECIPE, tmp_path / "img", runner=BadKernel())
    assert list((tmp_path / "img").iterdir()) == []


def test_read_image_incomplete(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_image(tmp_path)
    (tmp_path / "image.json").write_text("{not json")
    with pytest.raises(BangerError, match="unreadable image metadata"):
        read_image(tmp_path)


# --------------------------------------------------------------------------
# the real image (mmdebstrap from the apt mirror; cached by fingerprint)


@pytest.fixture(scope="module")
def debian_image() -> BuiltImage:
    if not (shutil.which("mmdebstrap") and system.which("mkfs.ext4")):
        pytest.skip("needs mmdebstrap and e2fsprogs")
    from pytest_banger.images import cached_debian_image

    return cached_debian_image()


@pytest.mark.slow
def test_debian_image_contents(debian_image: BuiltImage) -> None:
    image = debian_image
    # The recipe, banger's guest files and which plugins add artifacts (the work seed).
    from pytest_banger.images import image_fingerprint

    assert image.fingerprint == image_fingerprint(default_recipe())
    assert image.recipe_name == "debian-bookworm"
    # Issue 16: an x86_64 ELF64 vmlinux that the ported Firecracker loader accepts, with the
    # PVH entry QEMU boots (the Debian 6.1 cloud kernel has CONFIG_PVH=y).
    with open(image.kernel, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF" and head[4] == 2 and head[18:20] == b"\x3e\x00"
    loaded = kernelload.check_vmlinux(image.kernel, version="1.16.1")
    assert loaded.protocol == "PvhBoot" and loaded.pvh_entry is not None
    assert image.initrd is not None and image.initrd.stat().st_size > 1_000_000
    listing = debugfs(image.rootfs, "ls -l /usr/lib/banger")
    assert "banger-boot" in listing and "banger-agent" in listing
    assert "100755" in listing
    boot_py = Path(__import__("banger_guest.boot").boot.__file__).read_text()
    assert debugfs(image.rootfs, "cat /usr/lib/banger/banger-boot") == boot_py
    for path in (
        "/usr/sbin/sshd",
        "/usr/bin/python3",
        "/usr/bin/ssh-keygen",
        "/sbin/ip",
        "/usr/lib/systemd/systemd",
        "/run/banger-vsock",
    ):
        assert "Inode:" in debugfs(image.rootfs, f"stat {path}"), path
    assert "ssh_host_" not in debugfs(image.rootfs, "ls /etc/ssh")
    root_ls = debugfs(image.rootfs, "ls /root")
    assert ".bashrc" not in root_ls and ".ssh" not in root_ls  # moved to the work seed
    seed = debugfs(image.work_seed, "ls /")
    assert ".bashrc" in seed and ".ssh" in seed
    for img, label in ((image.rootfs, "banger-root"), (image.work_seed, "banger-work")):
        out = subprocess.run(["dumpe2fs", "-h", str(img)], capture_output=True, text=True)
        assert f"Filesystem volume name:   {label}" in out.stdout


@pytest.mark.slow
def test_cached_image_is_reused(debian_image: BuiltImage) -> None:
    from pytest_banger.images import cached_debian_image

    again = cached_debian_image()
    assert again == debian_image
    assert again.built_at == debian_image.built_at  # not rebuilt


def test_host_apt_sources_only_for_the_hosts_suite(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "apt/sources.list.d").mkdir(parents=True)
    (etc / "os-release").write_text("ID=debian\nVERSION_CODENAME=bookworm\n")
    (etc / "apt/sources.list").write_text("# only comments\n")
    (etc / "apt/sources.list.d/debian.sources").write_text("Types: deb\n")
    (etc / "apt/sources.list.d/old.list.disabled").write_text("deb x y\n")
    assert host_apt_sources("bookworm", etc) == [str(etc / "apt/sources.list.d/debian.sources")]
    assert host_apt_sources("trixie", etc) == []
