"""Docs kept true by tests: every hookspec has a docstring and a section in
docs/plugins.md with its exact signature, and the worked example in the docs
is the tested example plugin's code, verbatim."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from banger_core import hookspecs

REPO = Path(__file__).resolve().parents[2]
PLUGINS_DOC = REPO / "docs" / "plugins.md"
EXAMPLE = REPO / "docs" / "examples" / "hello_plugin"


def hook_names() -> list[str]:
    return sorted(
        name
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    )


def signature(name: str) -> str:
    """``banger_vm_create(vm: VM, ctx: LifecycleContext) -> None``, as written in the source."""
    fn = getattr(hookspecs, name)
    sig = inspect.signature(fn)
    params = ", ".join(
        f"{p.name}: {p.annotation}" if p.annotation is not inspect.Parameter.empty else p.name
        for p in sig.parameters.values()
    )
    ret = sig.return_annotation
    return f"{name}({params})" + ("" if ret is inspect.Signature.empty else f" -> {ret}")


def test_there_are_hooks() -> None:
    names = hook_names()
    assert "banger_vm_create" in names
    assert all(n.startswith("banger_") for n in names)


@pytest.mark.parametrize("name", hook_names())
def test_hookspec_has_docstring(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and len(doc.split()) >= 5, f"hookspec {name} needs a docstring"


@pytest.mark.parametrize("name", hook_names())
def test_hook_documented_with_exact_signature(name: str) -> None:
    text = PLUGINS_DOC.read_text()
    headings = re.findall(r"^#{2,4} +`?([a-z_]+)", text, flags=re.MULTILINE)
    assert name in headings, f"docs/plugins.md has no section for {name}"
    section = text.split(f"`{name}`", 1)[1] if f"`{name}`" in text else text
    assert signature(name) in section, (
        f"docs/plugins.md must show the exact signature of {name}: {signature(name)}"
    )


def test_docs_name_no_hook_that_does_not_exist() -> None:
    documented = set(
        re.findall(r"^#{2,4} +`(banger_[a-z_]+)`", PLUGINS_DOC.read_text(), flags=re.MULTILINE)
    )
    assert documented <= set(hook_names()), documented - set(hook_names())


@pytest.mark.parametrize(
    "relpath", ["pyproject.toml", "banger_hello/__init__.py", "banger_hello/daemon.py"]
)
def test_worked_example_in_docs_is_the_tested_file(relpath: str) -> None:
    source = (EXAMPLE / relpath).read_text()
    assert source.strip() in PLUGINS_DOC.read_text(), (
        f"docs/plugins.md must include docs/examples/hello_plugin/{relpath} verbatim "
        "(copy the file into the worked example section)"
    )


def test_generated_hook_reference_is_current() -> None:
    """The hook reference in docs/plugins.md is generated from the hookspecs (`make docs`)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hookdocs", REPO / "scripts" / "hookdocs.py")
    assert spec and spec.loader
    hookdocs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hookdocs)
    assert hookdocs.updated(PLUGINS_DOC.read_text()) == PLUGINS_DOC.read_text(), (
        "docs/plugins.md's hook reference differs from banger_core/hookspecs.py: run `make docs`"
    )
