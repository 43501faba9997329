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


def check_host_paths(uid: int, paths: Mapping[str, str | None], allowed: Iterable[str]) -> None:
    """Refuse, naming the first offender, a path an unprivileged caller may not use."""
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
