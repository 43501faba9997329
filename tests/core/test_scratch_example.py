"""The out-of-tree example docs/examples/scratch_plugin uses only the documented API."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "scratch_plugin"


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_plugin_code_imports_only_banger_core_itself() -> None:
    modules = set()
    for path in (EXAMPLE / "banger_scratch").rglob("*.py"):
        modules |= imported_modules(path)
    banger = {m for m in modules if m.startswith("banger_core")}
    assert banger == {"banger_core"}, banger


def test_tests_use_only_the_public_testing_helpers() -> None:
    modules = set()
    for path in (EXAMPLE / "tests").rglob("*.py"):
        modules |= imported_modules(path)
    banger = {m for m in modules if m.startswith("banger_core")}
    assert banger <= {"banger_core", "pytest_banger"}, banger


def test_plugin_hooks_load(banger_plugin_manager, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import banger_scratch

    pm = banger_plugin_manager(("scratch", banger_scratch))
    info = pm.infos["scratch"]
    assert info.status == "loaded", info.error
    assert {
        "banger_vm_options",
        "banger_cli_subcommands",
        "banger_rpc_methods",
        "banger_vm_create",
        "banger_vm_configure",
    } <= set(info.hooks)
