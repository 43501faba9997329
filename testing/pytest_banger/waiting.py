"""Wait for a condition with a deadline: the one polling helper of banger's tests.

Tests never synchronise with a fixed ``sleep``: they poll the condition they
need until a deadline, and fail with a message naming what never happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    :param timeout: seconds before giving up.
    :param what: what is awaited, for the failure message ("guest boot").
    :param interval: seconds between calls.
    :param ignore: exception types that count as "not yet" (for example
        ``(OSError,)`` while a socket appears); the last one is shown on failure.
    :param diagnostics: called on failure; its text is appended to the message
        (a console log, a listing).
    :raises AssertionError: when the deadline passes, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    message = f"timed out after {timeout:g}s waiting for {what}"
    if last is not None:
        message += f" (last error: {last!r})"
    if diagnostics is not None:
        message += "\n" + diagnostics()
    raise AssertionError(message)
