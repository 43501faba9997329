"""Test support for banger and its plugins.

Public: :func:`fake_vm`, :func:`fake_context`, :class:`FakeRunner` and
:func:`FakeRPCCall` for unit tests of hooks and RPC handlers;
:func:`wait_until`, the one way tests wait for a condition (never a fixed
sleep); the pytest fixtures of
:mod:`banger_core.testing.plugin` (``banger_sim_host`` and friends) and
:func:`cached_debian_image` for end-to-end tests on the simulated host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "fake_vm": "banger_core.testing.fakes",
    "fake_context": "banger_core.testing.fakes",
    "FakeRunner": "banger_core.testing.fakes",
    "FakeContext": "banger_core.testing.fakes",
    "FakeRPCCall": "banger_core.testing.fakes",
    "cached_debian_image": "banger_core.testing.images",
    "wait_until": "banger_core.testing.waiting",
}

__all__ = [
    "FakeContext",
    "FakeRPCCall",
    "FakeRunner",
    "cached_debian_image",
    "fake_context",
    "fake_vm",
    "wait_until",
]


def __getattr__(name: str) -> Any:
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'banger_core.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from banger_core.testing.fakes import (
        FakeContext,
        FakeRPCCall,
        FakeRunner,
        fake_context,
        fake_vm,
    )
    from banger_core.testing.images import cached_debian_image
    from banger_core.testing.waiting import wait_until
