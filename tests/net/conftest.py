"""Fixtures for networking tests: a throwaway network namespace per test.

Everything networking tests touch lives inside a namespace named
``bgr-test-<random>`` that the fixture creates and always deletes, so the
host's own interfaces, routes and firewall are never changed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

NETNS_PREFIX = "bgr-test-"


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("needs /dev/net/tun for TAP devices")


@pytest.fixture
def netns() -> Iterator[str]:
    """Name of a fresh network namespace, deleted (with all its links) afterwards."""
    _require_root()
    from pyroute2 import netns as pr_netns

    name = NETNS_PREFIX + secrets.token_hex(4)
    pr_netns.create(name)
    try:
        yield name
    finally:
        pr_netns.remove(name)


@pytest.fixture
def bridge(netns: str) -> str:
    """A bridge ``bgrbr0`` with 172.30.0.1/24 inside ``netns``."""
    from banger_core.net import host

    host.ensure_bridge("bgrbr0", "172.30.0.1/24", netns=netns)
    return "bgrbr0"
