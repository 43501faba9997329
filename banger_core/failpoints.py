"""Failure injection for rollback and crash tests.

``BANGER_FAILPOINTS=disks,boot`` (in the daemon's environment) makes those
stages of ``vm create`` / ``vm start`` / ``vm stop`` / ``vm delete`` fail
right after their work is done, so tests can prove that every stage rolls
back completely.

``BANGER_HANGPOINTS=network`` makes the daemon stop at that stage instead:
it creates ``$BANGER_HANGPOINT_MARK`` (when set; the test polls for it),
then waits ``BANGER_HANGPOINT_SECONDS`` (default: until the work is
cancelled), so a test can SIGKILL or SIGTERM the daemon exactly there.
Unset in normal use; costs one environment lookup per stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from banger_core.errors import BangerError, CancelledError


def _listed(var: str, stage: str) -> bool:
    points = os.environ.get(var)
    return points is not None and stage in {p.strip() for p in points.split(",")}


def check(stage: str, cancelled: Callable[[], bool] | None = None) -> None:
    """Raise (or hang) when ``stage`` is listed in ``BANGER_FAILPOINTS`` (``BANGER_HANGPOINTS``)."""
    if _listed("BANGER_HANGPOINTS", stage):
        _hang(stage, cancelled or (lambda: False))
    if _listed("BANGER_FAILPOINTS", stage):
        raise BangerError(f"injected failure at stage {stage!r} (BANGER_FAILPOINTS)")


def _hang(stage: str, cancelled: Callable[[], bool]) -> None:
    mark = os.environ.get("BANGER_HANGPOINT_MARK")
    if mark:
        with open(mark, "a") as fh:
            fh.write(stage + "\n")
    seconds = float(os.environ.get("BANGER_HANGPOINT_SECONDS") or "inf")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cancelled():
            raise CancelledError(f"cancelled at stage {stage!r}")
        time.sleep(0.05)
