"""Test support for banger and its plugins.

Public: :func:`fake_vm`, :func:`fake_context`, :class:`FakeRunner` and
:func:`FakeRPCCall` for unit tests of hooks and RPC handlers;
:func:`wait_until`, the one way tests wait for a condition (never a fixed
sleep); the pytest fixtures of :mod:`pytest_banger.plugin`
(``banger_sim_host`` and friends) and :func:`cached_debian_image` for
end-to-end tests on the simulated host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "fake_vm": "pytest_banger.fakes",
    "fake_context": "pytest_banger.fakes",
    "FakeRunner": "pytest_banger.fakes",
    "FakeContext": "pytest_banger.fakes",
    "FakeRPCCall": "pytest_banger.fakes",
    "cached_debian_image": "pytest_banger.images",
    "wait_until": "pytest_banger.waiting",
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
        raise AttributeError(f"module 'pytest_banger' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from pytest_banger.fakes import FakeContext, FakeRPCCall, FakeRunner, fake_context, fake_vm
    from pytest_banger.images import cached_debian_image
    from pytest_banger.waiting import wait_until
