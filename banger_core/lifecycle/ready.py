"""Readiness checks: what ``vm create`` / ``vm start`` wait for after SSH answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class ReadyCheck:
    """One thing a booted VM must answer before the core calls it ready.

    Returned by :func:`banger_core.hookspecs.banger_vm_ready_checks`. The
    core runs each check as a stage of its own, named :attr:`name` (shown
    live by ``vm create``), after the "waiting for SSH" stage.

    :param name: the stage name, e.g. ``"waiting for agent"``.
    :param wait: ``wait(timeout, cancelled)`` blocks until the VM answers,
        at most ``timeout`` seconds, polling ``cancelled()`` (true when the
        user pressed Ctrl-C); it raises a :class:`banger_core.BangerError`
        naming what did not answer. Its return value, if a string, is
        logged as the stage's result.
    :param timeout: seconds the check may take (``None``: the core's
        ``[vm] ssh_timeout_seconds``).
    :param detail: shown next to the stage name (``vsock port 1024``).
    """

    name: str
    wait: Callable[[float, Callable[[], bool]], Any]
    timeout: float | None = None
    detail: str = ""
