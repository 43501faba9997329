"""A simulated host with the Debian image and one running VM, shared by a module's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pytest_banger.simhost import SimulatedHost


@pytest.fixture(scope="module")
def host() -> Iterator[SimulatedHost]:
    """A started simulated host with the cached Debian image registered."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TAP and loop devices)")
    from pytest_banger.images import cached_debian_image

    image = cached_debian_image()
    with SimulatedHost(tap_pool_size=1) as h:
        h.start()
        h.register_image(image)
        yield h
