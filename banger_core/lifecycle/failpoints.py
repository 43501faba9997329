"""Failure injection for rollback tests.

``BANGER_FAILPOINTS=disks,boot`` (in the daemon's environment) makes those
stages of ``vm create`` / ``vm start`` fail right after their work is done,
so tests can prove that every stage rolls back completely. Unset in normal
use; costs one environment lookup per stage.
"""

from __future__ import annotations

import os

from banger_core.errors import BangerError


def check(stage: str) -> None:
    """Raise when ``stage`` is listed in ``BANGER_FAILPOINTS``."""
    points = os.environ.get("BANGER_FAILPOINTS")
    if points and stage in {p.strip() for p in points.split(",")}:
        raise BangerError(f"injected failure at stage {stage!r} (BANGER_FAILPOINTS)")
