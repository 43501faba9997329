"""Unit tests of banger-scratch's hooks with banger's fake VM and context (milliseconds)."""

from __future__ import annotations

from pathlib import Path

import banger_scratch
import pytest

from banger_core import GuestConfig, MachineSpec, NotFoundError, ValidationError
from pytest_banger import FakeRPCCall, fake_context, fake_vm


def test_option_is_declared_and_validated() -> None:
    (option,) = banger_scratch.banger_vm_options()
    assert (option.name, option.type, option.on_set) == ("scratch-size", "size", False)
    assert option.check("1G") == 1 << 30
    with pytest.raises(ValidationError, match="--scratch-size 1M is not allowed: use 16M to 64G"):
        option.check("1M")


def test_create_makes_the_disk_with_an_undo(tmp_path: Path) -> None:
    vm = fake_vm("box", tmp_path, options={"scratch": {"scratch_size": 32 << 20}})
    ctx = fake_context("scratch", {"mount_point": "/scratch"})
    banger_scratch.banger_vm_create(vm=vm, ctx=ctx)
    disk = tmp_path / "scratch.ext4"
    assert disk.stat().st_size == 32 << 20
    assert ctx.runner.calls == [["mkfs.ext4", "-q", "-F", "-L", "scratch", str(disk)]]
    assert ctx.undo_descriptions() == [f"plugin scratch: remove {disk}"]
    assert ctx.rollback() == [] and not disk.exists()


def test_configure_mounts_the_device_add_drive_returned(tmp_path: Path) -> None:
    vm = fake_vm("box", tmp_path)
    (tmp_path / "scratch.ext4").write_bytes(b"")
    machine = MachineSpec(vcpus=1, memory_mib=128, kernel="k")
    machine.add_drive("rootfs", "root.ext4", is_root=True)
    guest = GuestConfig("box")
    banger_scratch.banger_vm_configure(
        vm=vm,
        machine=machine,
        guest=guest,
        ctx=fake_context("scratch", {"mount_point": "/scratch"}),
    )
    assert guest.mounts == [
        {"device": "/dev/vdb", "target": "/scratch", "fstype": "ext4", "options": "defaults"}
    ]


def test_show_answers_for_a_vm_by_name(tmp_path: Path) -> None:
    vm = fake_vm("box", tmp_path, options={"scratch": {"scratch_size": 1 << 30}})
    call = FakeRPCCall("scratch", {"mount_point": "/scratch"}, vms=[vm])
    shown = banger_scratch.show({"ref": "box"}, call)
    assert shown["size"] == 1 << 30 and shown["exists"] is False
    assert shown["mount_point"] == "/scratch"
    with pytest.raises(NotFoundError, match="no VM 'ghost'"):
        banger_scratch.show({"ref": "ghost"}, call)
