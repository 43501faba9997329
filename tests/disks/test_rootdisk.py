"""Root disk strategies: real clones, and dm-snapshot through a fake runner."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from banger_core import system
from banger_core.disks import rootdisk
from banger_core.disks.rootdisk import SnapshotHandles
from banger_core.errors import BangerError, CommandError, ConflictError, ValidationError

MiB = 1024 * 1024


class FakeRunner:
    """Records argv lists; answers like losetup/blockdev/dmsetup; fails on demand."""

    def __init__(self, fail: Callable[[list[str]], str | None] = lambda argv: None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.loops = 0

    def __call__(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        input: str | None = None,
        env: object = None,
    ) -> system.Result:
        args = [str(a) for a in argv]
        self.calls.append(args)
        stderr = self.fail(args)
        if stderr is not None:
            raise CommandError(args, 1, stderr)
        out = ""
        if args[:3] == ["losetup", "--find", "--show"]:
            out = f"/dev/loop{self.loops}\n"
            self.loops += 1
        elif args[:2] == ["blockdev", "--getsz"]:
            out = "4194304\n"
        return system.Result(args, 0, out, "")


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    base = tmp_path / "base.ext4"
    base.write_bytes(b"\0" * 4096)
    cow = rootdisk.prepare_cow(tmp_path / "vm" / "root.cow", 8 * MiB)
    return base, cow


LOSETUP_BASE = ["losetup", "--find", "--show", "--read-only"]
LOSETUP_COW = ["losetup", "--find", "--show"]
TABLE = "0 4194304 snapshot /dev/loop0 /dev/loop1 P 8"


def test_activate_snapshot_success(images: tuple[Path, Path]) -> None:
    base, cow = images
    runner = FakeRunner()
    handles = rootdisk.activate_snapshot("banger-vm1-root", base, cow, runner)
    assert handles == SnapshotHandles(
        "/dev/loop0", "/dev/loop1", "banger-vm1-root", "/dev/mapper/banger-vm1-root"
    )
    assert runner.calls == [
        [*LOSETUP_BASE, str(base)],
        [*LOSETUP_COW, str(cow)],
        ["blockdev", "--getsz", "/dev/loop0"],
        ["dmsetup", "create", "banger-vm1-root", "--table", TABLE],
    ]
    assert SnapshotHandles.from_dict(handles.to_dict()) == handles


@pytest.mark.parametrize(
    ("failing", "rollback"),
    [
        ("losetup --read-only", []),
        ("losetup cow", [["losetup", "--detach", "/dev/loop0"]]),
        (
            "blockdev",
            [["losetup", "--detach", "/dev/loop1"], ["losetup", "--detach", "/dev/loop0"]],
        ),
        (
            "dmsetup",
            [["losetup", "--detach", "/dev/loop1"], ["losetup", "--detach", "/dev/loop0"]],
        ),
    ],
)
def test_activate_snapshot_rolls_back_in_reverse(
    images: tuple[Path, Path], failing: str, rollback: list[list[str]]
) -> None:
    base, cow = images

    def fail(argv: list[str]) -> str | None:
        matches = {
            "losetup --read-only": argv[:4] == LOSETUP_BASE,
            "losetup cow": argv[:3] == LOSETUP_COW and "--read-only" not in argv,
            "blockdev": argv[0] == "blockdev",
            "dmsetup": argv[:2] == ["dmsetup", "create"],
        }
        return f"{failing}: injected failure" if matches[failing] else None

    runner = FakeRunner(fail)
    with pytest.raises(CommandError, match="injected failure") as info:
        rootdisk.activate_snapshot("banger-vm1-root", base, cow, runner)
    assert not getattr(info.value, "__notes__", None)
    steps = {"losetup --read-only": 1, "losetup cow": 2, "blockdev": 3, "dmsetup": 4}
    assert runner.calls[steps[failing] :] == rollback


def test_activate_snapshot_bad_blockdev_output_rolls_back(images: tuple[Path, Path]) -> None:
    base, cow = images

    class Garbled(FakeRunner):
        def __call__(self, argv, **kwargs):  # type: ignore[override]
            result = super().__call__(argv, **kwargs)
            if argv[0] == "blockdev":
                return system.Result(result.argv, 0, "lots\n", "")
            return result

    runner = Garbled()
    with pytest.raises(BangerError, match="'lots'"):
        rootdisk.activate_snapshot("vm1", base, cow, runner)
    assert runner.calls[-2:] == [
        ["losetup", "--detach", "/dev/loop1"],
        ["losetup", "--detach", "/dev/loop0"],
    ]


def test_activate_snapshot_rollback_failure_is_noted(images: tuple[Path, Path]) -> None:
    base, cow = images

    def fail(argv: list[str]) -> str | None:
        if argv[0] == "blockdev":
            return "blockdev: original failure"
        if argv == ["losetup", "--detach", "/dev/loop1"]:
            return "losetup: /dev/loop1: detach failed: Permission denied"
        return None

    runner = FakeRunner(fail)
    with pytest.raises(CommandError, match="original failure") as info:
        rootdisk.activate_snapshot("vm1", base, cow, runner)
    notes = info.value.__notes__
    assert len(notes) == 1
    assert "rollback of root snapshot 'vm1' also failed" in notes[0]
    assert "Permission denied" in notes[0]
    # the base loop was still detached after the cow loop failed
    assert runner.calls[-1] == ["losetup", "--detach", "/dev/loop0"]


def test_activate_snapshot_validates_inputs(tmp_path: Path, images: tuple[Path, Path]) -> None:
    base, cow = images
    runner = FakeRunner()
    with pytest.raises(ValidationError, match="'bad/name'"):
        rootdisk.activate_snapshot("bad/name", base, cow, runner)
    with pytest.raises(ValidationError, match=r"missing\.ext4"):
        rootdisk.activate_snapshot("vm1", tmp_path / "missing.ext4", cow, runner)
    with pytest.raises(ValidationError, match="prepare_cow"):
        rootdisk.activate_snapshot("vm1", base, tmp_path / "nocow", runner)
    assert runner.calls == []


FULL = SnapshotHandles("/dev/loop0", "/dev/loop1", "vm1", "/dev/mapper/vm1")
TEARDOWN = [
    ["dmsetup", "remove", "vm1"],
    ["losetup", "--detach", "/dev/loop1"],
    ["losetup", "--detach", "/dev/loop0"],
]


def test_deactivate_snapshot_in_order() -> None:
    handles = SnapshotHandles(**FULL.to_dict())
    runner = FakeRunner()
    rootdisk.deactivate_snapshot(handles, runner)
    assert runner.calls == TEARDOWN
    assert handles == SnapshotHandles()


def test_deactivate_snapshot_tolerates_gone_handles() -> None:
    gone = {
        "dmsetup": "Device vm1 not found\nCommand failed.",
        "losetup": "losetup: /dev/loop1: detach failed: No such device or address",
    }
    runner = FakeRunner(lambda argv: gone[argv[0]])
    handles = SnapshotHandles(**FULL.to_dict())
    rootdisk.deactivate_snapshot(handles, runner)
    assert runner.calls == TEARDOWN
    assert handles == SnapshotHandles()
    # partial handles: only what exists is touched
    runner = FakeRunner()
    rootdisk.deactivate_snapshot(SnapshotHandles(base_loop="/dev/loop3"), runner)
    assert runner.calls == [["losetup", "--detach", "/dev/loop3"]]


def test_deactivate_snapshot_retries_busy_with_backoff() -> None:
    attempts = {"n": 0}

    def fail(argv: list[str]) -> str | None:
        if argv[0] == "dmsetup" and attempts["n"] < 3:
            attempts["n"] += 1
            return "device-mapper: remove ioctl on vm1 failed: Device or resource busy"
        return None

    sleeps: list[float] = []
    runner = FakeRunner(fail)
    rootdisk.deactivate_snapshot(SnapshotHandles(**FULL.to_dict()), runner, sleep=sleeps.append)
    assert sleeps == [0.1, 0.2, 0.4]
    assert runner.calls == [TEARDOWN[0]] * 4 + TEARDOWN[1:]


def test_deactivate_snapshot_gives_up_when_always_busy() -> None:
    def fail(argv: list[str]) -> str | None:
        if argv[0] == "dmsetup":
            return "device-mapper: remove ioctl on vm1 failed: Device or resource busy"
        return None

    sleeps: list[float] = []
    handles = SnapshotHandles(**FULL.to_dict())
    runner = FakeRunner(fail)
    with pytest.raises(BangerError, match=r"teardown incomplete.*busy"):
        rootdisk.deactivate_snapshot(handles, runner, sleep=sleeps.append, busy_retries=5)
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.0]
    # loops are still detached (autoclear); the mapper handle is kept for a retry
    assert runner.calls[-2:] == TEARDOWN[1:]
    assert handles == SnapshotHandles(dm_name="vm1", device_path="/dev/mapper/vm1")


def test_deactivate_snapshot_collects_all_errors() -> None:
    runner = FakeRunner(lambda argv: "Permission denied")
    with pytest.raises(BangerError) as info:
        rootdisk.deactivate_snapshot(SnapshotHandles(**FULL.to_dict()), runner)
    assert runner.calls == TEARDOWN
    assert str(info.value).count("Permission denied") == 3


def test_prepare_cow_is_sparse_and_exclusive(tmp_path: Path) -> None:
    cow = rootdisk.prepare_cow(tmp_path / "a" / "root.cow", 64 * MiB)
    st = cow.stat()
    assert st.st_size == 64 * MiB
    assert st.st_blocks == 0
    with pytest.raises(ConflictError, match="already exists"):
        rootdisk.prepare_cow(cow, 64 * MiB)
    for bad in (0, -512, 1000, True):
        with pytest.raises(ValidationError, match=repr(bad) if bad is not True else "True"):
            rootdisk.prepare_cow(tmp_path / "b.cow", bad)
    assert not (tmp_path / "b.cow").exists()


# -- clone strategies, for real ----------------------------------------------


def _sparse_image(path: Path) -> Path:
    """A 32 MiB file with 1 MiB of data at each end and a hole between."""
    with path.open("wb") as f:
        f.write(os.urandom(MiB))
        f.seek(31 * MiB)
        f.write(os.urandom(MiB))
    return path


def _reflink_works(tmp_path: Path) -> bool:
    return rootdisk.describe_strategies(tmp_path).available[rootdisk.REFLINK]


def test_sparse_copy_keeps_holes(tmp_path: Path) -> None:
    base = _sparse_image(tmp_path / "base.ext4")
    dest = rootdisk.create_root_disk(base, tmp_path / "vms" / "vm1" / "root.ext4", "sparse-copy")
    assert dest.read_bytes() == base.read_bytes()
    assert dest.stat().st_size == base.stat().st_size
    assert dest.stat().st_blocks <= base.stat().st_blocks
    assert dest.stat().st_blocks * 512 < 4 * MiB  # the hole was not filled
    assert not list(dest.parent.glob(".*partial"))
    with pytest.raises(ConflictError, match="already exists"):
        rootdisk.create_root_disk(base, dest, "sparse-copy")
    assert rootdisk.remove_root_disk(dest) is True
    assert rootdisk.remove_root_disk(dest) is False


def test_reflink_clone(tmp_path: Path) -> None:
    if not _reflink_works(tmp_path):
        pytest.skip("the filesystem of tmp_path has no reflink support")
    base = _sparse_image(tmp_path / "base.ext4")
    dest = rootdisk.create_root_disk(base, tmp_path / "root.ext4", "reflink")
    assert dest.read_bytes() == base.read_bytes()


def test_reflink_failure_leaves_nothing(tmp_path: Path) -> None:
    base = _sparse_image(tmp_path / "base.ext4")
    dest = tmp_path / "vm" / "root.ext4"
    if _reflink_works(tmp_path):
        pytest.skip("reflink works here; the failure path needs a filesystem without it")
    with pytest.raises(CommandError, match="cp exited"):
        rootdisk.create_root_disk(base, dest, "reflink")
    assert list(dest.parent.iterdir()) == []


def test_create_root_disk_validation(tmp_path: Path) -> None:
    base = _sparse_image(tmp_path / "base.ext4")
    with pytest.raises(ValidationError, match="'zfs-clone' is unknown; allowed: dm-snapshot"):
        rootdisk.create_root_disk(base, tmp_path / "x", "zfs-clone")
    with pytest.raises(ValidationError, match="'dm-snapshot' does not clone"):
        rootdisk.create_root_disk(base, tmp_path / "x", "dm-snapshot")
    with pytest.raises(ValidationError, match=r"nope\.ext4"):
        rootdisk.create_root_disk(tmp_path / "nope.ext4", tmp_path / "x", "sparse-copy")


# -- choosing -------------------------------------------------------------------


def test_choose_strategy_on_this_machine(tmp_path: Path) -> None:
    report = rootdisk.describe_strategies(tmp_path)
    assert rootdisk.choose_strategy(tmp_path) == report.chosen
    assert report.available[rootdisk.SPARSE_COPY]
    assert len(report.lines()) == 3
    assert sum(line.startswith("*") for line in report.lines()) == 1
    assert list(tmp_path.iterdir()) == []  # probe files cleaned up


def test_choose_strategy_prefers_dm_then_reflink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = tmp_path / "control"
    monkeypatch.setattr(rootdisk, "DM_CONTROL", control)
    monkeypatch.setattr(rootdisk.system, "which", lambda p: f"/usr/sbin/{p}")
    ok = FakeRunner()
    no_reflink = FakeRunner(lambda argv: None)

    def refuse(argv, **kwargs):  # type: ignore[no-untyped-def]
        no_reflink.calls.append(list(argv))
        return system.Result(list(argv), 1, "", "cp: failed to clone: Operation not supported")

    state = tmp_path / "state" / "not-yet-created"
    assert rootdisk.choose_strategy(state, ok) == "reflink"
    assert ok.calls[0][:2] == ["cp", "--reflink=always"]
    assert rootdisk.choose_strategy(state, refuse) == "sparse-copy"
    report = rootdisk.describe_strategies(state, refuse)
    assert "Operation not supported" in report.reasons["reflink"]
    assert "missing" in report.reasons["dm-snapshot"]

    control.touch()
    assert rootdisk.choose_strategy(state, refuse) == "dm-snapshot"
    monkeypatch.setattr(rootdisk.system, "which", lambda p: None if p == "dmsetup" else p)
    assert rootdisk.choose_strategy(state, refuse) == "sparse-copy"
    assert (
        "dmsetup not installed"
        in rootdisk.describe_strategies(state, refuse).reasons["dm-snapshot"]
    )


def test_clone_commands(tmp_path: Path) -> None:
    base = _sparse_image(tmp_path / "base.ext4")
    seen: list[list[str]] = []

    def fake_cp(argv: Sequence[str], **kwargs: object) -> system.Result:
        seen.append(list(argv))
        Path(argv[-1]).write_bytes(b"clone")
        return system.Result(list(argv), 0, "", "")

    for strategy, flag in (("reflink", "--reflink=always"), ("sparse-copy", "--sparse=always")):
        dest = tmp_path / strategy / "root.ext4"
        assert rootdisk.create_root_disk(base, dest, strategy, fake_cp) == dest
        assert seen[-1] == ["cp", flag, "--", str(base), str(dest.parent / ".root.ext4.partial")]
        assert dest.read_bytes() == b"clone"
