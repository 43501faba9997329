"""docs/user-guide.md is executed: its ``console`` blocks run on a simulated host, in order.

The guide cannot drift from the product: every example marked ``console``
runs as written against one simulated host (the Debian image registered as
``debian``) and its output must match what the guide shows, up to the
placeholders of :mod:`tests.e2e.guide`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

import pytest

from banger_core import system
from pytest_banger.simhost import SimulatedHost
from tests.e2e.guide import ELLIPSIS, console_blocks, guide_path, matches, normalise

pytestmark = [pytest.mark.net, pytest.mark.slow]

BLOCKS = console_blocks(guide_path().read_text())


def test_the_guide_has_executed_examples():
    assert len(BLOCKS) >= 8
    assert sum(len(b.commands) for b in BLOCKS) >= 20


@pytest.fixture(scope="module")
def guide_host(debian_image) -> Iterator[SimulatedHost]:
    with SimulatedHost(tap_pool_size=2) as host:
        host.start()
        host.register_image(debian_image)
        yield host


def run(host: SimulatedHost, command: str) -> list[str]:
    """``command`` as a user types it, stdout and stderr interleaved as printed."""
    env = {**host.env, "COLUMNS": "80", "PYTHONUNBUFFERED": "1", "TERM": "dumb"}
    result = system.run(["sh", "-c", f"exec 2>&1\n{command}"], env=env, check=False, timeout=300)
    return result.stdout.splitlines()


def trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines = lines[:-1]
    return lines


def test_every_console_example_prints_what_the_guide_shows(guide_host):
    host = guide_host
    replacements = [
        (str(host.state_dir / "run"), "/run/banger"),
        (str(host.state_dir), "/var/lib/banger"),
    ]
    failures = []
    for block in BLOCKS:
        for cmd in block.commands:
            actual = trimmed([normalise(x, replacements) for x in run(host, cmd.command)])
            expected = trimmed(
                [x if x == ELLIPSIS else normalise(x, replacements) for x in cmd.expected]
            )
            if not matches(expected, actual):
                diff = "\n".join(
                    difflib.unified_diff(expected, actual, "guide", "actual", lineterm="")
                )
                failures.append(f"docs/user-guide.md:{cmd.line}: $ {cmd.command}\n{diff}")
    assert not failures, "\n\n".join(failures)


def test_placeholders_and_elisions():
    assert normalise("VM web (pid 4242) at 172.30.0.2 took 0.87s, id 0bdd424ad0e4") == (
        "VM web (pid <pid>) at <ip> took <t>, id <id>"
    )
    assert normalise("/tmp/h/state/run/x and /tmp/h/state/y", [("/tmp/h/state", "/S")]) == (
        "/S/run/x and /S/y"
    )
    assert matches(["a", ELLIPSIS, "d"], ["a", "b", "c", "d"])
    assert matches(["a", ELLIPSIS], ["a"])
    assert not matches(["a", "d"], ["a", "b", "d"])
    assert not matches(["a"], ["a", "extra"])
