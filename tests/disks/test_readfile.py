"""read_vm_file: a stopped VM's file, read on the host from a real ext4 drive."""

from __future__ import annotations

from pathlib import Path

import pytest

from banger_core import (
    BangerError,
    ConflictError,
    NotFoundError,
    ValidationError,
    read_vm_file,
    system,
)
from pytest_banger import fake_vm

pytestmark = pytest.mark.skipif(
    not (system.which("mkfs.ext4") and system.which("debugfs")), reason="needs e2fsprogs"
)


def ext4_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    tree = tmp_path / "tree"
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    image = tmp_path / "drive.ext4"
    system.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image), "8M"])
    return image


def test_reads_a_file_of_the_root_disk_and_of_another_drive(tmp_path):
    root = ext4_with(tmp_path / "r", {"etc/hostname": b"box\n", "etc/blob": bytes(range(256))})
    work = ext4_with(tmp_path / "w", {"notes/a b.txt": b"kept\n"})
    vm = fake_vm("box", tmp_path / "vm", root_disk=str(root), root_strategy="sparse-copy")
    assert read_vm_file(vm, "/etc/hostname") == b"box\n"
    assert read_vm_file(vm, "/etc/blob") == bytes(range(256))  # bytes, not text
    assert read_vm_file(vm, "/notes/a b.txt", drive=work) == b"kept\n"


def test_refusals_name_the_problem(tmp_path):
    root = ext4_with(tmp_path / "r", {"etc/hostname": b"box\n", "big": b"x" * 5000})
    vm = fake_vm("box", tmp_path / "vm", root_disk=str(root), root_strategy="sparse-copy")
    with pytest.raises(NotFoundError, match=r"no file /etc/nope on drive\.ext4 of VM box"):
        read_vm_file(vm, "/etc/nope")
    with pytest.raises(ValidationError, match=r"/etc on drive\.ext4 of VM box is not a regular"):
        read_vm_file(vm, "/etc")
    with pytest.raises(ValidationError, match="is 5000 bytes, more than 4096"):
        read_vm_file(vm, "/big", limit=4096)
    for bad in ("etc/hostname", "/etc/../etc/hostname", '/a"b'):
        with pytest.raises(ValidationError, match="must be absolute"):
            read_vm_file(vm, bad)
    running = fake_vm("web", root_disk=str(root), state="running", pid=4242)
    with pytest.raises(ConflictError, match="VM web is running; stop it before reading"):
        read_vm_file(running, "/etc/hostname")
    snap = fake_vm("snap", root_disk=str(root), root_strategy="dm-snapshot")
    with pytest.raises(BangerError, match="root disk is a dm-snapshot"):
        read_vm_file(snap, "/etc/hostname")
    with pytest.raises(NotFoundError, match="has no drive"):
        read_vm_file(vm, "/etc/hostname", drive=tmp_path / "missing.ext4")
