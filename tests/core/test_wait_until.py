"""The harness's one polling helper."""

from __future__ import annotations

import itertools

import pytest

from pytest_banger import wait_until


def test_returns_the_first_truthy_value():
    calls = itertools.count(1)
    assert wait_until(lambda: next(calls) >= 3 and "ready", interval=0) == "ready"
    assert next(calls) == 4  # called exactly three times


def test_ignored_exceptions_mean_not_yet():
    calls = itertools.count(1)

    def flaky() -> int:
        n = next(calls)
        if n < 3:
            raise OSError("connection refused")
        return n

    assert wait_until(flaky, interval=0, ignore=(OSError,)) == 3


def test_other_exceptions_propagate():
    with pytest.raises(KeyError):
        wait_until(lambda: {}["x"], interval=0, ignore=(OSError,))


def test_timeout_names_what_the_last_error_and_diagnostics():
    def refused() -> bool:
        raise OSError("connection refused")

    with pytest.raises(AssertionError) as info:
        wait_until(
            refused,
            timeout=0,
            what="sshd",
            ignore=(OSError,),
            diagnostics=lambda: "console: booting",
        )
    text = str(info.value)
    assert text.startswith("timed out after 0s waiting for sshd")
    assert "connection refused" in text and text.endswith("\nconsole: booting")
