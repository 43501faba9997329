"""``banger plugins new``: the generated distribution is complete and its unit tests pass."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from banger_core import system
from banger_core.scaffold import check_name, files


def test_new_writes_a_ready_distribution(banger_home, tmp_path: Path) -> None:
    result = banger_home.run("plugins", "new", "demo_note", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "banger-demo-note"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "README.md",
        "banger_demo_note/__init__.py",
        "pyproject.toml",
        "tests/test_e2e.py",
        "tests/test_unit.py",
    ]
    assert 'demo_note = "banger_demo_note"' in (root / "pyproject.toml").read_text()
    again = banger_home.run("plugins", "new", "demo_note", "--dir", str(tmp_path))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_generated_unit_tests_pass(tmp_path: Path) -> None:
    root = tmp_path / "banger-demo"
    for rel, content in files("demo").items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    result = system.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow",
            str(root / "tests"),
        ],
        check=False,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


@pytest.mark.parametrize("bad", ["Demo", "1x", "with-dash", "", "x" * 40])
def test_bad_names_are_refused(bad: str) -> None:
    from banger_core import ValidationError

    with pytest.raises(ValidationError, match="is not allowed: use lower case letters"):
        check_name(bad)
