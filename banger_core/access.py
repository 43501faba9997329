"""Who may make the daemon touch which host paths (standard library only).

Root and the daemon's own user may name any path. Other callers (members
of ``[daemon] socket_group``) may only name paths under the directories
listed in ``[daemon] allowed_image_dirs``: otherwise the group could make
the daemon read any file on the host (``/etc/shadow`` as a "kernel").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from banger_core.errors import ForbiddenError


def privileged(uid: int) -> bool:
    """Whether a caller with ``uid`` is root or the daemon's own user."""
    return uid in (0, os.geteuid())


def unreadable_as(uid: int, paths: Iterable[str]) -> dict[str, str]:
    """``{path: why}`` for each of ``paths`` that user ``uid`` cannot open for reading.

    Each is opened by ``head -c 0`` running with that user's own uid and
    groups (:func:`banger_core.system.run_as`), so the answer is the
    kernel's, not an imitation of it (``os.access`` would use root's identity).
    """
    from banger_core import system

    out: dict[str, str] = {}
    for path in dict.fromkeys(p for p in paths if p):
        result = system.run_as(uid, ["head", "-q", "-c", "0", "--", path], timeout=30)
        if result.returncode != 0:
            detail = result.stderr.strip().splitlines()[-1:] or ["cannot be read"]
            out[path] = detail[0].split(": ")[-1]
    return out


def check_host_paths(uid: int, paths: Mapping[str, str | None], allowed: Iterable[str]) -> None:
    """Refuse, naming the first offender, a path an unprivileged caller may not use:
    outside ``allowed`` (symlinks resolved), or one the caller cannot read themselves."""
    if privileged(uid):
        return
    roots = [Path(os.path.realpath(a)) for a in allowed if a]
    for what, value in paths.items():
        if not value:
            continue
        real = Path(os.path.realpath(value))
        if not any(real == root or root in real.parents for root in roots):
            where = (
                ", ".join(str(r) for r in roots)
                if roots
                else "none are configured ([daemon] allowed_image_dirs)"
            )
            raise ForbiddenError(
                f"{what} {value!r} is not allowed for uid {uid}: only root may "
                f"name host paths outside the allowed directories ({where})"
            )
    named = {value: what for what, value in paths.items() if value}
    for path, why in unreadable_as(uid, named).items():
        raise ForbiddenError(
            f"{named.get(path, 'path')} {path!r} is not readable by uid {uid} ({why}); "
            "the daemon reads host paths only with the permissions of the user who names them"
        )
