"""Shared helpers for the core tests (fixtures come from pytest_banger.plugin)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "docs" / "examples" / "hello_plugin"


@pytest.fixture
def hello_on_path(monkeypatch: pytest.MonkeyPatch):
    """The example plugin ``banger_hello`` importable in this process."""
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    import banger_hello

    try:
        yield banger_hello
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "banger_hello"]:
            del sys.modules[name]
