#!/usr/bin/env python3
"""Print the source files of banger_core's public API (what plugins may import).

``make lint`` runs ``mypy --strict`` over plugins/ and these files: the modules
that define a name of ``banger_core.__all__`` (``banger_core._LAZY``), plus the
hook contract and the hook facade that checks plugins' results.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTRA = ("banger_core.errors", "banger_core.plugins", "banger_core.hookcheck")


def files() -> list[str]:
    """Repository-relative paths of the public API's modules."""
    sys.path.insert(0, str(REPO))
    import banger_core

    modules = {"banger_core", *banger_core._LAZY.values(), *EXTRA}
    out = []
    for module in sorted(modules):
        base = REPO / module.replace(".", "/")
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        out.append(str(path.relative_to(REPO)))
    return out


if __name__ == "__main__":
    print(" ".join(files()))
