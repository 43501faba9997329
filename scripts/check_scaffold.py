#!/usr/bin/env python3
"""CI: ``banger plugins new`` output installs into banger's venv and passes its own tests.

Generates a plugin in a temporary directory, installs it (editable) into this
interpreter's environment with ``banger plugins install -e``, runs its unit
tests and its end-to-end test on the simulated host, and uninstalls it again,
whatever happens. Run by ``make test`` after the main suite.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from banger_core import system

NAME = "ci_scaffold"


def banger(*args: str, env: dict[str, str]) -> system.Result:
    """Run this environment's banger CLI."""
    exe = Path(sys.executable).parent / "banger"
    return system.run([str(exe), *args], env=env, timeout=1800)


def main() -> int:
    """Generate, install, test, uninstall; exit non-zero when anything fails."""
    work = Path(tempfile.mkdtemp(prefix="banger-scaffold-"))
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(work / "cache"),
        "BANGER_STATE_DIR": str(work / "state"),
        "BANGER_CONFIG": str(work / "none.toml"),
    }
    (work / "none.toml").write_text("")
    installed = False
    try:
        banger("plugins", "new", NAME, "--dir", str(work), env=env)
        root = work / f"banger-{NAME.replace('_', '-')}"
        said = banger("plugins", "install", "-e", str(root), env=env).stdout
        installed = True
        if "FAILED" in said or "loaded" not in said:
            print(f"check_scaffold: install did not report {NAME} loaded:\n{said}", file=sys.stderr)
            return 1
        listed = banger("plugins", "list", env=env).stdout
        if NAME not in listed or "loaded" not in listed:
            print(f"check_scaffold: {NAME} is not listed as loaded:\n{listed}", file=sys.stderr)
            return 1
        result = system.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
            check=False,
            timeout=1800,
            env={**os.environ, "BANGER_CLI_CACHE": "0"},
        )
        print(result.stdout[-2000:])
        if result.returncode != 0:
            print(result.stderr[-2000:], file=sys.stderr)
            return result.returncode
        print("check_scaffold: the generated plugin installs and passes its tests")
        return 0
    finally:
        if installed:
            banger("plugins", "uninstall", NAME, env=env)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
