"""Import boundaries, checked statically with ``ast``.

- ``banger_core`` never imports a plugin package (``banger_*`` other than
  ``banger_core`` and ``banger_guest``): plugins are found by entry point.
- Plugins under ``plugins/*/`` do not import each other.
- Only ``banger_core/system.py`` runs external programs: no other module
  imports ``subprocess`` or calls ``os.system``/``os.popen``/``os.exec*``/
  ``os.spawn*``/``asyncio.create_subprocess_*``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "banger_core"
PLUGINS = REPO / "plugins"
CORE_PACKAGES = {"banger_core", "banger_guest"}
RUNS_PROGRAMS = CORE / "system.py"
FORBIDDEN_CALLS = {
    ("os", "system"),
    ("os", "popen"),
    ("asyncio", "create_subprocess_exec"),
    ("asyncio", "create_subprocess_shell"),
    ("pty", "spawn"),
}
FORBIDDEN_PREFIXES = {("os", "exec"), ("os", "spawn"), ("os", "posix_spawn")}
# Deliberate exceptions, each with its reason.
ALLOWED = {
    # The simulated kernel replaces itself with the guest image's init, as a
    # kernel does; it runs nothing on the host's behalf.
    "plugins/fcsim/banger_fcsim/guestinit.py": {"os.execve"},
    # The guest agent runs inside the VM (standalone, standard library only, copied into
    # images by the vsock plugin): it runs the guest's programs for `vm exec`, not the host's.
    "plugins/vsock/banger_vsock/guest/agent.py": {"import subprocess"},
}


def python_files(root: Path, *, skip_tests: bool = False) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts)
        if parts & {"build", ".venv", "__pycache__"} or any(p.endswith(".egg-info") for p in parts):
            continue
        if skip_tests and ("tests" in parts or path.name.startswith(("test_", "conftest"))):
            continue
        yield path


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every absolute import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            # ``from banger_core import x`` is fine; ``importlib.import_module("banger_dns")``
            # is caught below as a string constant.
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def top(module: str) -> str:
    return module.split(".", 1)[0]


def plugin_packages() -> dict[str, set[str]]:
    """``{plugin dir name: top-level packages it ships}`` for plugins/*/."""
    found: dict[str, set[str]] = {}
    if not PLUGINS.is_dir():
        return found
    for plugin_dir in sorted(p for p in PLUGINS.iterdir() if p.is_dir()):
        packages = set()
        for init in plugin_dir.rglob("__init__.py"):
            rel = init.relative_to(plugin_dir).parts
            if "tests" in rel or not init.parent.name.startswith("banger_"):
                continue
            if not (init.parent.parent / "__init__.py").exists():
                packages.add(init.parent.name)
        found[plugin_dir.name] = packages
    return found


def test_core_imports_no_plugin_package() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: imports {module}"
        for path in python_files(CORE)
        for line, module in imported_modules(path)
        if top(module).startswith("banger_") and top(module) not in CORE_PACKAGES
    ]
    assert not offenders, "banger_core must find plugins by entry point:\n" + "\n".join(offenders)


#: Distributions that are not the product: the VMM back-ends, the library
#: they share and the test harness. The core imports none of them.
NOT_PRODUCT = {"banger_fcsim", "banger_fcqemu", "banger_vmmkit", "pytest_banger"}
#: The deprecated alias ``banger_core.testing`` forwards to pytest_banger on
#: demand (by a computed name, so it needs no exception here).
HARNESS_ALIAS = CORE / "testing" / "__init__.py"


def test_core_imports_no_vmm_or_harness() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: imports {module}"
        for path in python_files(CORE)
        for line, module in imported_modules(path)
        if top(module) in NOT_PRODUCT
    ]
    assert not offenders, "banger_core holds no simulator, VMM or harness:\n" + "\n".join(offenders)


def test_core_holds_no_vmm_or_harness_code() -> None:
    assert not list(CORE.glob("fc*/*.py"))  # no fcsim/, fcqemu/ (stale caches do not count)
    harness = sorted(p.name for p in (CORE / "testing").glob("*.py"))
    assert harness == ["__init__.py"], harness  # the deprecated alias, nothing else
    assert "import pytest" not in HARNESS_ALIAS.read_text()


def test_plugins_do_not_import_each_other() -> None:
    packages = plugin_packages()
    owner = {pkg: name for name, pkgs in packages.items() for pkg in pkgs}
    offenders = []
    for name in packages:
        for path in python_files(PLUGINS / name):
            for line, module in imported_modules(path):
                other = owner.get(top(module))
                if other is not None and other != name:
                    offenders.append(
                        f"{path.relative_to(REPO)}:{line}: plugin {name} "
                        f"imports {module} (plugin {other})"
                    )
    assert not offenders, "\n".join(offenders)


def _program_runs(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if top(alias.name) == "subprocess":
                    yield f"{node.lineno}: import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if top(node.module) == "subprocess":
                yield f"{node.lineno}: from {node.module} import ..."
            for alias in node.names:
                pair = (node.module, alias.name)
                if pair in FORBIDDEN_CALLS or any(
                    node.module == m and alias.name.startswith(p) for m, p in FORBIDDEN_PREFIXES
                ):
                    yield f"{node.lineno}: from {node.module} import {alias.name}"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = (node.value.id, node.attr)
            if pair in FORBIDDEN_CALLS or any(
                node.value.id == m and node.attr.startswith(p) for m, p in FORBIDDEN_PREFIXES
            ):
                yield f"{node.lineno}: {node.value.id}.{node.attr}"


def test_only_system_module_runs_programs() -> None:
    roots = [CORE] + ([PLUGINS] if PLUGINS.is_dir() else [])
    offenders = [
        f"{path.relative_to(REPO)}:{where}"
        for root in roots
        for path in python_files(root, skip_tests=True)
        if path != RUNS_PROGRAMS
        for where in _program_runs(path)
        if where.split(": ", 1)[1] not in ALLOWED.get(str(path.relative_to(REPO)), ())
    ]
    assert not offenders, "run external programs through banger_core.system only:\n" + "\n".join(
        offenders
    )


def test_system_module_is_where_programs_run() -> None:
    # Guards the checker itself: it must see system.py's own subprocess use.
    assert list(_program_runs(RUNS_PROGRAMS))


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import subprocess\n", True),
        ("from subprocess import run\n", True),
        ("import os\nos.system('x')\n", True),
        ("import os\nos.execvp('x', ['x'])\n", True),
        ("import asyncio\nasyncio.create_subprocess_exec('x')\n", True),
        ("import os\nos.getpid()\n", False),
    ],
)
def test_program_run_detector(tmp_path: Path, source: str, expected: bool) -> None:
    path = tmp_path / "mod.py"
    path.write_text(source)
    assert bool(list(_program_runs(path))) is expected


def test_plugin_import_detector(tmp_path: Path) -> None:
    path = tmp_path / "mod.py"
    path.write_text(
        "import banger_dns.server\nfrom banger_core import hookimpl\n"
        "import importlib\nimportlib.import_module('banger_nat')\n"
    )
    mods = {top(m) for _, m in imported_modules(path)}
    assert {"banger_dns", "banger_nat", "banger_core"} <= mods
