"""Fixtures for end-to-end tests: the CLI against a daemon on a simulated host."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pytest_banger.simhost import SimulatedHost

pytestmark = [pytest.mark.net, pytest.mark.slow]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TAP and loop devices)")


@pytest.fixture(scope="session")
def debian_image():
    """The real Debian image, built once per run and cached by recipe hash."""
    _need_root()
    from pytest_banger.images import cached_debian_image

    return cached_debian_image()


@pytest.fixture(scope="module")
def host(debian_image) -> Iterator[SimulatedHost]:
    """One simulated host with the image registered, shared by a module's tests."""
    with SimulatedHost(tap_pool_size=2) as h:
        h.start()
        h.register_image(debian_image)
        yield h


@pytest.fixture
def fresh_host(debian_image, request) -> Iterator[SimulatedHost]:
    """A simulated host of a test's own; ``@pytest.mark.host_env({...})`` sets daemon env."""
    marker = request.node.get_closest_marker("host_env")
    env = marker.args[0] if marker else None
    with SimulatedHost(tap_pool_size=2, env=env) as h:
        h.start()
        h.register_image(debian_image)
        yield h


def pytest_configure(config):
    config.addinivalue_line("markers", "host_env(env): environment for fresh_host's daemon")
