"""A private directory for the CLI's own files (a copy of a VM key, the member's SSH config).

A ``socket_group`` member may have no writable home (a service account with
``HOME=/nonexistent``). The first of these that can be made private to the
user is used:

1. ``$XDG_RUNTIME_DIR/banger`` (systemd's per-user ``/run/user/<uid>``);
2. ``~/.cache/banger``;
3. ``/tmp/banger-<uid>``, created 0700; an existing one that is a symlink,
   is not a directory or belongs to someone else is refused (another local
   user could have planted it to read or replace our files).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from banger_core.errors import BangerError


def private_dir() -> Path:
    """The user's private banger directory (created 0700 if needed); see the module doc.

    :raise BangerError: no candidate can be made private (one line naming each).
    """
    problems: list[str] = []
    for candidate in candidates():
        try:
            return ensure_private(candidate)
        except OSError as exc:
            problems.append(f"{candidate}: {exc.strerror or exc}")
        except BangerError as exc:
            problems.append(str(exc))
    raise BangerError("no private directory for banger's files: " + "; ".join(problems))


def candidates() -> list[Path]:
    """Where :func:`private_dir` looks, in order."""
    found: list[Path] = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        found.append(Path(runtime) / "banger")
    home = os.path.expanduser("~")
    if os.path.isabs(home):
        found.append(Path(home) / ".cache" / "banger")
    found.append(Path(tempfile.gettempdir()) / f"banger-{os.getuid()}")
    return found


def ensure_private(path: Path) -> Path:
    """``path`` as a directory of ours with mode 0700, created if missing.

    Only the last component is created in a shared parent (``/tmp``), with
    ``mkdir`` (which never follows a symlink) and checked with ``lstat``.

    :raise BangerError: it exists but is a symlink, not a directory, or not ours.
    :raise OSError: it cannot be created.
    """
    uid = os.getuid()
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise BangerError(f"{path} is not a directory (a symlink or file is there); remove it")
    if info.st_uid != uid:
        raise BangerError(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {uid}); "
            "someone else made it: remove it (as root) and try again"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: str) -> Path:
    """Write ``data`` to ``path`` (in a private directory) with mode 0600, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
