"""Per-VM root disks over a shared, read-only image.

Three strategies, best first, chosen automatically (``doctor`` shows which
and why):

``dm-snapshot``
    A persistent device-mapper snapshot: the image is attached read-only
    through a loop device, the VM's writes go to its own sparse COW file
    (another loop device). Set up at every VM start, torn down at stop.
``reflink``
    A copy-on-write clone of the image file (``cp --reflink=always``), on
    filesystems that share extents (btrfs, XFS).
``sparse-copy``
    A plain copy that keeps holes (``cp --sparse=always``); works anywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from banger_core import system
from banger_core.errors import BangerError, CommandError, ConflictError, ValidationError

DM_SNAPSHOT = "dm-snapshot"
REFLINK = "reflink"
SPARSE_COPY = "sparse-copy"
STRATEGIES = (DM_SNAPSHOT, REFLINK, SPARSE_COPY)
CLONE_STRATEGIES = (REFLINK, SPARSE_COPY)

DM_CONTROL = Path("/dev/mapper/control")
SNAPSHOT_CHUNK_SECTORS = 8  # 4 KiB COW chunks
_DM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,126}$")
_GONE_MARKERS = ("not found", "no such device", "no such file", "does not exist")
_BUSY_MARKER = "device or resource busy"


# -- choosing a strategy ------------------------------------------------------


@dataclass(frozen=True)
class StrategyReport:
    """Which strategy ``choose_strategy`` picks, and why each one is or is not usable."""

    chosen: str
    reasons: dict[str, str]
    """Strategy name -> one-line explanation ("available: ..." or "unavailable: ...")."""
    available: dict[str, bool]

    def lines(self) -> list[str]:
        """Human-readable lines for ``doctor``, the chosen strategy marked with ``*``."""
        return [
            f"{'*' if name == self.chosen else ' '} {name}: {self.reasons[name]}"
            for name in STRATEGIES
        ]


def _dm_status() -> tuple[bool, str]:
    if not DM_CONTROL.exists():
        return False, f"unavailable: {DM_CONTROL} missing (no device-mapper in this kernel)"
    dmsetup = system.which("dmsetup")
    if dmsetup is None:
        return False, "unavailable: dmsetup not installed (apt install dmsetup)"
    losetup = system.which("losetup")
    if losetup is None:
        return False, "unavailable: losetup not installed (apt install mount)"
    return True, f"available: {DM_CONTROL} present, {dmsetup} found"


def _existing_dir(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (same filesystem, in practice)."""
    path = Path(path).absolute()
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _reflink_status(state_dir: Path, runner: system.Runner) -> tuple[bool, str]:
    where = _existing_dir(state_dir)
    try:
        probe_dir = Path(tempfile.mkdtemp(prefix=".banger-reflink-", dir=where))
    except OSError as exc:
        return False, f"unavailable: cannot write a probe file in {where}: {exc.strerror}"
    try:
        src, dst = probe_dir / "a", probe_dir / "b"
        src.write_bytes(b"banger reflink probe\n")
        result = runner(["cp", "--reflink=always", str(src), str(dst)], check=False, timeout=30)
        if result.returncode == 0:
            return True, f"available: the filesystem of {where} supports reflink clones"
        detail = (result.stderr.strip().splitlines() or ["cp failed"])[-1]
        return False, f"unavailable: no reflink support on the filesystem of {where} ({detail})"
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)


def describe_strategies(state_dir: Path, runner: system.Runner = system.run) -> StrategyReport:
    """Probe every strategy for ``state_dir`` and report the chosen one and why.

    The reflink probe copies a tiny temporary file inside ``state_dir`` (or
    its nearest existing parent) and removes it.
    """
    dm_ok, dm_why = _dm_status()
    rl_ok, rl_why = _reflink_status(state_dir, runner)
    available = {DM_SNAPSHOT: dm_ok, REFLINK: rl_ok, SPARSE_COPY: True}
    reasons = {
        DM_SNAPSHOT: dm_why,
        REFLINK: rl_why,
        SPARSE_COPY: "available: plain copy keeping holes (always works, uses the most space)",
    }
    chosen = next(name for name in STRATEGIES if available[name])
    return StrategyReport(chosen=chosen, reasons=reasons, available=available)


def choose_strategy(state_dir: Path, runner: system.Runner = system.run) -> str:
    """Return the best usable strategy for VM disks under ``state_dir``.

    ``dm-snapshot`` when ``/dev/mapper/control`` exists and ``dmsetup`` is
    installed, else ``reflink`` when ``cp --reflink=always`` works on that
    filesystem, else ``sparse-copy``.
    """
    if _dm_status()[0]:
        return DM_SNAPSHOT
    if _reflink_status(state_dir, runner)[0]:
        return REFLINK
    return SPARSE_COPY


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValidationError(
            f"root disk strategy {strategy!r} is unknown; allowed: {', '.join(STRATEGIES)}"
        )


# -- clone strategies ---------------------------------------------------------


def create_root_disk(
    base: Path, dest: Path, strategy: str, runner: system.Runner = system.run
) -> Path:
    """Clone image ``base`` to ``dest`` with a clone strategy; return ``dest``.

    The copy is written to a temporary name next to ``dest`` and renamed
    when complete, so a failure leaves nothing behind. Raises
    :class:`ConflictError` when ``dest`` exists.
    """
    _check_strategy(strategy)
    if strategy not in CLONE_STRATEGIES:
        raise ValidationError(
            f"strategy {strategy!r} does not clone files; use prepare_cow/activate_snapshot "
            f"(clone strategies: {', '.join(CLONE_STRATEGIES)})"
        )
    base, dest = Path(base), Path(dest)
    if not base.is_file():
        raise ValidationError(f"image file {base} does not exist or is not a regular file")
    if dest.exists():
        raise ConflictError(f"root disk {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    flag = "--reflink=always" if strategy == REFLINK else "--sparse=always"
    try:
        runner(["cp", flag, "--", str(base), str(partial)], timeout=3600)
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return dest


def remove_root_disk(dest: Path) -> bool:
    """Delete a cloned root disk; return False when it was already gone."""
    try:
        Path(dest).unlink()
    except FileNotFoundError:
        return False
    return True


# -- dm-snapshot --------------------------------------------------------------


@dataclass
class SnapshotHandles:
    """Host handles of one active root snapshot (None: not created / already gone).

    Persist them (``to_dict``) with the VM's runtime state so a stop after a
    daemon restart can still tear them down.
    """

    base_loop: str | None = None
    cow_loop: str | None = None
    dm_name: str | None = None
    device_path: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, str | None]) -> SnapshotHandles:
        """Rebuild from :meth:`to_dict` output (unknown keys ignored)."""
        return cls(**{k: data.get(k) for k in ("base_loop", "cow_loop", "dm_name", "device_path")})


def prepare_cow(dest_cow: Path, size_bytes: int) -> Path:
    """Create the VM's sparse COW file of ``size_bytes`` (no blocks allocated).

    It holds the VM's writes for its whole life; it is never truncated.
    Raises :class:`ConflictError` when it already exists.
    """
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes <= 0:
        raise ValidationError(f"COW size {size_bytes!r} must be a positive number of bytes")
    if size_bytes % 512:
        raise ValidationError(f"COW size {size_bytes} must be a multiple of 512 bytes")
    dest_cow = Path(dest_cow)
    dest_cow.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(dest_cow, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConflictError(f"COW file {dest_cow} already exists")
    try:
        os.ftruncate(fd, size_bytes)
    except BaseException:
        os.close(fd)
        dest_cow.unlink(missing_ok=True)
        raise
    os.close(fd)
    return dest_cow


def _check_dm_name(name: str) -> None:
    if not _DM_NAME_RE.match(name or ""):
        raise ValidationError(
            f"device-mapper name {name!r} must be 1-127 letters, digits, '_', '.', '+', '-' "
            "and start with a letter or digit"
        )


def activate_snapshot(
    name: str, base: Path, cow: Path, runner: system.Runner = system.run
) -> SnapshotHandles:
    """Attach ``base`` (read-only) and ``cow`` and create ``/dev/mapper/<name>``.

    Runs ``losetup`` twice, ``blockdev --getsz`` and ``dmsetup create`` with a
    persistent snapshot table. On any failure everything made so far is
    torn down in reverse order and the original error is raised (with a
    note when the rollback failed too).
    """
    _check_dm_name(name)
    base, cow = Path(base), Path(cow)
    if not base.is_file():
        raise ValidationError(f"image file {base} does not exist or is not a regular file")
    if not cow.is_file():
        raise ValidationError(f"COW file {cow} does not exist; create it with prepare_cow")
    handles = SnapshotHandles()
    try:
        handles.base_loop = _loop_path(
            runner(["losetup", "--find", "--show", "--read-only", str(base)], timeout=60)
        )
        handles.cow_loop = _loop_path(runner(["losetup", "--find", "--show", str(cow)], timeout=60))
        sectors = _sectors(runner(["blockdev", "--getsz", handles.base_loop], timeout=60))
        table = (
            f"0 {sectors} snapshot {handles.base_loop} {handles.cow_loop} "
            f"P {SNAPSHOT_CHUNK_SECTORS}"
        )
        runner(["dmsetup", "create", name, "--table", table], timeout=60)
        handles.dm_name = name
        handles.device_path = f"/dev/mapper/{name}"
    except BaseException as exc:
        try:
            deactivate_snapshot(handles, runner, sleep=lambda _s: None, busy_retries=0)
        except BaseException as rollback_exc:
            exc.add_note(f"rollback of root snapshot {name!r} also failed: {rollback_exc}")
        raise
    return handles


def _loop_path(result: system.Result) -> str:
    path = result.stdout.strip()
    if not path.startswith("/dev/"):
        raise BangerError(f"losetup printed no loop device (output {result.stdout!r})")
    return path


def _sectors(result: system.Result) -> int:
    text = result.stdout.strip()
    if not text.isdigit() or int(text) == 0:
        raise BangerError(f"blockdev --getsz gave {text!r}, expected a positive sector count")
    return int(text)


def _is_gone(exc: CommandError) -> bool:
    text = exc.stderr.lower()
    return any(marker in text for marker in _GONE_MARKERS)


def deactivate_snapshot(
    handles: SnapshotHandles,
    runner: system.Runner = system.run,
    *,
    sleep: Callable[[float], None] = time.sleep,
    busy_retries: int = 10,
    first_delay: float = 0.1,
    max_delay: float = 1.0,
) -> None:
    """Remove the mapper device, then detach the COW and base loop devices.

    Tolerates handles that are None or already gone. ``dmsetup remove`` is
    retried on "Device or resource busy" up to ``busy_retries`` times with
    doubling delays (the VMM may still be releasing the device). Every step
    is attempted; failures are raised together as one :class:`BangerError`.
    Clears each handle once it is gone, so a retry only redoes what is left.
    """
    errors: list[str] = []
    if handles.dm_name:
        delay = first_delay
        for attempt in range(busy_retries + 1):
            try:
                runner(["dmsetup", "remove", handles.dm_name], timeout=60)
            except CommandError as exc:
                if _is_gone(exc):
                    break
                if _BUSY_MARKER in exc.stderr.lower() and attempt < busy_retries:
                    sleep(delay)
                    delay = min(delay * 2, max_delay)
                    continue
                errors.append(str(exc))
                break
            else:
                break
        if not errors:
            handles.dm_name = None
            handles.device_path = None
    for attr in ("cow_loop", "base_loop"):
        loop = getattr(handles, attr)
        if not loop:
            continue
        try:
            runner(["losetup", "--detach", loop], timeout=60)
        except CommandError as exc:
            if not _is_gone(exc):
                errors.append(str(exc))
                continue
        setattr(handles, attr, None)
    if errors:
        raise BangerError("root snapshot teardown incomplete: " + "; ".join(errors))
