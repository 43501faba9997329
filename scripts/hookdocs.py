#!/usr/bin/env python3
"""Generate the hook reference of docs/plugins.md from banger_core/hookspecs.py.

The hookspec docstrings are the one source of the prose: this script renders
them (with each hook's exact signature, grouped by the section comments of
hookspecs.py) between the markers in docs/plugins.md.

    python scripts/hookdocs.py           # rewrite docs/plugins.md
    python scripts/hookdocs.py --check   # exit 1 when the docs differ (CI, make lint)
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "plugins.md"
BEGIN = (
    "<!-- BEGIN GENERATED HOOK REFERENCE: edit banger_core/hookspecs.py, then run `make docs` -->"
)
END = "<!-- END GENERATED HOOK REFERENCE -->"
_SECTION = re.compile(r"^# -{10,}\n# (?P<title>[^\n]+)\n# -{10,}$", re.MULTILINE)
_SPEC = re.compile(r"^@hookspec(?:\([^)]*\))?\ndef (?P<name>banger_[a-z_]+)\(", re.MULTILINE)


def signature(fn: object) -> str:
    """``banger_vm_create(vm: VM, ctx: LifecycleContext) -> None`` as written in the source."""
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    params = ", ".join(
        f"{p.name}: {p.annotation}" if p.annotation is not inspect.Parameter.empty else p.name
        for p in sig.parameters.values()
    )
    ret = sig.return_annotation
    name = getattr(fn, "__name__", "?")
    return f"{name}({params})" + ("" if ret is inspect.Signature.empty else f" -> {ret}")


def rst_to_md(text: str) -> str:
    """The small reST subset hookspec docstrings use, as Markdown."""
    text = re.sub(r":(?:func|class|meth|attr|mod|data):`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    out: list[str] = []
    field: list[str] | None = None

    def flush() -> None:
        nonlocal field
        if field is not None:
            out.append(" ".join(part.strip() for part in field))
            field = None

    for line in text.splitlines():
        m = re.match(r"^:(param|return|returns|raise|raises)\s*([^:]*):\s*(.*)$", line)
        if m:
            flush()
            kind, arg, rest = m.groups()
            if kind == "param":
                field = [f"- **`{arg.strip()}`**: {rest}"]
            elif kind.startswith("return"):
                field = [f"- **Returns:** {rest}"]
            else:
                field = [
                    f"- **Raises:** `{arg.strip()}`: {rest}"
                    if arg.strip()
                    else f"- **Raises:** {rest}"
                ]
        elif field is not None and line.startswith("    "):
            field.append(line)
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out).strip()


def render() -> str:
    """The generated hook reference (Markdown, markers included)."""
    sys.path.insert(0, str(REPO))
    from banger_core import hookspecs

    source = Path(hookspecs.__file__).read_text()
    marks = [(m.start(), "section", m.group("title")) for m in _SECTION.finditer(source)]
    marks += [(m.start(), "hook", m.group("name")) for m in _SPEC.finditer(source)]
    parts = [BEGIN, ""]
    for _, kind, value in sorted(marks):
        if kind == "section":
            parts += [f"### {value}", ""]
            continue
        fn = getattr(hookspecs, value)
        parts += [
            f"#### `{value}`",
            "",
            "```python",
            signature(fn),
            "```",
            "",
            rst_to_md(inspect.getdoc(fn) or ""),
            "",
            f"- **If a plugin misbehaves:** `{hookspecs.ON_FAILURE[value]}` "
            "(see [A misbehaving plugin](#a-misbehaving-plugin))",
            "",
        ]
    parts.append(END)
    return "\n".join(parts)


def updated(doc: str) -> str:
    """``doc`` with the generated block replaced."""
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC}: the markers {BEGIN!r} / {END!r} are missing")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + render() + tail


def main(argv: list[str]) -> int:
    """Rewrite the docs, or with ``--check`` report whether they are current."""
    doc = DOC.read_text()
    new = updated(doc)
    if "--check" in argv:
        if new != doc:
            print(
                f"{DOC.relative_to(REPO)}: the hook reference differs from "
                "banger_core/hookspecs.py; run `make docs`",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != doc:
        DOC.write_text(new)
        print(f"rewrote the hook reference in {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
