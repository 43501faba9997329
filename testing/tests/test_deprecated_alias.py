"""The harness moved to pytest-banger; ``banger_core.testing`` keeps old imports working."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import pytest_banger
import pytest_banger.simhost


def test_old_names_are_the_new_objects_with_a_warning() -> None:
    import banger_core.testing as old

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fake_vm = old.fake_vm
    assert fake_vm is pytest_banger.fake_vm
    (warning,) = caught
    assert warning.category is DeprecationWarning
    assert "use pytest_banger.fake_vm instead" in str(warning.message)
    assert warning.filename == __file__  # points at the caller's line


def test_old_submodules_are_the_new_modules_with_a_warning() -> None:
    sys.modules.pop("banger_core.testing.simhost", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("banger_core.testing.simhost")
    assert old is pytest_banger.simhost
    assert old.SimulatedHost is pytest_banger.simhost.SimulatedHost
    assert any(
        w.category is DeprecationWarning and "use pytest_banger.simhost instead" in str(w.message)
        for w in caught
    )


def test_unknown_names_still_fail() -> None:
    import banger_core.testing as old

    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = old.nothing_here  # type: ignore[attr-defined]
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("banger_core.testing.nothing_here")


def test_only_pytest_banger_registers_a_pytest_plugin() -> None:
    def pytest11(dist: str) -> list[str]:
        eps = importlib.metadata.distribution(dist).entry_points
        return [ep.value for ep in eps if ep.group == "pytest11"]

    assert pytest11("banger") == []  # `pip install banger` loads no pytest plugin
    assert pytest11("pytest-banger") == ["pytest_banger.plugin"]


OLD_STYLE_TESTS = """
from banger_core.testing import FakeRunner, fake_context, fake_vm
from banger_core.testing.simhost import SimulatedHost


def test_written_against_the_old_docs(banger_plugin_manager):
    vm = fake_vm(name="old")
    ctx = fake_context("scratch", {"size": "1G"}, runner=FakeRunner())
    assert vm.name == "old" and ctx.config == {"size": "1G"}
    assert SimulatedHost.__module__ == "pytest_banger.simhost"
    assert banger_plugin_manager() is not None
"""


def test_a_plugin_test_suite_written_against_the_old_docs_passes(tmp_path: Path) -> None:
    (tmp_path / "test_old.py").write_text(textwrap.dedent(OLD_STYLE_TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "DeprecationWarning" in result.stdout and "pytest_banger" in result.stdout
