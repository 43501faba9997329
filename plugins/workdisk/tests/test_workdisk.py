"""The work disk plugin: real ext4 files, grown with real e2fsprogs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from banger_core import (
    GuestConfig,
    ImageBuildContext,
    LifecycleContext,
    MachineSpec,
    ValidationError,
    VMSpec,
    system,
)
from banger_core.config import load_settings
from banger_core.plugins import Hooks, get_plugin_manager
from banger_workdisk import disk, plugin
from pytest_banger import fake_context, fake_vm

pytestmark = pytest.mark.skipif(not system.which("mkfs.ext4"), reason="needs e2fsprogs")


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / "hello.txt").write_text("from the seed\n")
    path = tmp_path / "seed.ext4"
    system.run(["mkfs.ext4", "-q", "-d", str(home), "-L", "banger-work", str(path), "16M"])
    return path


def _read(image: Path, guest_path: str) -> str:
    return system.run(["debugfs", "-R", f"cat {guest_path}", str(image)]).stdout


def _fs_bytes(image: Path) -> int:
    out = system.run(["dumpe2fs", "-h", str(image)]).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return int(fields["Block count"]) * int(fields["Block size"])


def test_clone_is_sparse_grown_and_keeps_seed_content(tmp_path, seed):
    dest = disk.create_work_disk(tmp_path / "work.ext4", 1 << 30, seed)
    assert dest.stat().st_size == 1 << 30
    assert dest.stat().st_blocks * 512 < 64 << 20  # sparse: far below 1 GiB on disk
    assert _fs_bytes(dest) == 1 << 30
    assert _read(dest, "/hello.txt") == "from the seed\n"


def test_grow_and_refuse_shrink(tmp_path, seed):
    dest = disk.create_work_disk(tmp_path / "work.ext4", 64 << 20, seed)
    disk.grow(dest, 128 << 20)
    assert _fs_bytes(dest) == 128 << 20
    with pytest.raises(ValidationError, match="cannot shrink"):
        disk.grow(dest, 32 << 20)
    assert _read(dest, "/hello.txt") == "from the seed\n"


def test_no_seed_makes_an_empty_ext4(tmp_path):
    dest = disk.create_work_disk(tmp_path / "work.ext4", 32 << 20, None)
    assert _fs_bytes(dest) == 32 << 20


def test_failure_leaves_nothing(tmp_path, seed):
    def failing_runner(argv, **kw):
        if argv[0] == "resize2fs":
            raise system.CommandError(list(argv), 1, "boom")
        return system.run(argv, **kw)

    with pytest.raises(system.CommandError):
        disk.create_work_disk(tmp_path / "work.ext4", 64 << 20, seed, failing_runner)
    assert list(tmp_path.glob("work.ext4*")) == []


def _vm(tmp_path: Path, seed: Path | None, size: int) -> Any:
    return fake_vm(
        "box",
        tmp_path,
        options={"workdisk": {"disk_size": size}},
        image_artifacts={"work-seed": str(seed)} if seed else {},
    )


def test_hooks_create_configure_set_delete(tmp_path, seed):
    pm = get_plugin_manager(load_entrypoints=False, extra=[("workdisk", plugin)])
    hooks = Hooks(pm)
    settings = load_settings(hooks.config_defaults(), files=[])
    hooks.settings = settings
    vm = _vm(tmp_path, seed, 64 << 20)
    ctx = LifecycleContext(settings)
    hooks.vm_create(vm, ctx)
    path = tmp_path / "work.ext4"
    assert path.exists() and vm.plugin_state("workdisk")["mount_point"] == "/root"

    machine = MachineSpec(vcpus=1, memory_mib=128, kernel="k")
    machine.add_drive("rootfs", "root.ext4", is_root=True)
    machine.add_drive("guestcfg", "cfg.img", read_only=True)
    guest = GuestConfig("box")
    hooks.vm_configure(vm, machine, guest, LifecycleContext(settings))
    assert guest.mounts == [
        {"device": "/dev/vdc", "target": "/root", "fstype": "ext4", "options": "defaults"}
    ]
    assert machine.ordered_drives()[2].path == str(path)

    hooks.vm_set(vm, {"disk_size": 96 << 20}, LifecycleContext(settings))
    assert path.stat().st_size == 96 << 20

    # A later failure in create rolls the disk back.
    assert ctx.rollback() == []
    assert not path.exists()
    assert hooks.vm_deleted(vm) == []


def test_disk_size_is_this_plugins_option() -> None:
    (option,) = plugin.banger_vm_options()
    assert (option.name, option.type, option.config_key) == ("disk-size", "size", "default_size")
    assert option.check("1G") == 1 << 30
    with pytest.raises(ValidationError, match=r"^--disk-size 1M is not allowed: use 64M to ") as e:
        option.check("1M")
    # The upper limit (the file system's size) reads at a glance: "252G", not "264212084K".
    upper = str(e.value).split(" to ")[1].split(" ")[0]
    assert re.fullmatch(r"[1-9][0-9]*[KMGT]", upper), upper
    assert upper[-1] == "K" or int(upper[:-1]) >= 10 or upper[-1] == "T"
    with pytest.raises(ValidationError, match=r"^--disk-size '1P' is not a size"):
        option.check("1P")


def test_set_refuses_to_shrink(tmp_path) -> None:
    vm = _vm(tmp_path, None, 1 << 30)
    spec = VMSpec(
        name="box",
        image="debian",
        cpus=1,
        memory_mib=256,
        disk_size=0,
        is_create=False,
        vm=vm,
        options={"workdisk": {"disk_size": 512 << 20}},
    )
    with pytest.raises(ValidationError, match="smaller than the current 1G; disks only grow"):
        plugin.banger_vm_validate(spec)


def test_image_artifact_takes_root_out_of_the_tree(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "root/.ssh").mkdir(parents=True)
    (root / "root/.bashrc").write_text("# hi\n")
    out = tmp_path / "out"
    out.mkdir()
    ctx = ImageBuildContext("workdisk", out, {"seed_min_mib": 16})
    (artifact,) = plugin.banger_image_artifacts({"name": "x", "os": "debian"}, root, ctx)
    assert (artifact.name, artifact.path) == ("work-seed", out / "work-seed.ext4")
    assert list((root / "root").iterdir()) == []
    assert "# hi" in _read(artifact.path, "/.bashrc")


def test_vm_created_before_the_plugin_gets_a_disk_at_start(tmp_path) -> None:
    vm = _vm(tmp_path, None, 64 << 20)
    ctx = fake_context("workdisk", {"mount_point": "/root"}, runner=system.run)
    machine = MachineSpec(vcpus=1, memory_mib=128, kernel="k")
    guest = GuestConfig("box")
    plugin.banger_vm_configure(vm=vm, machine=machine, guest=guest, ctx=ctx)
    assert (tmp_path / "work.ext4").exists()
    assert ctx.undo_descriptions() == [f"plugin workdisk: work disk {tmp_path / 'work.ext4'}"]
