"""`banger plugins install -e DIR` reports what the next command will see (no false FAILED)."""

from __future__ import annotations

import re

NAME = "ci_install_check"


def test_editable_install_reports_the_plugin_loaded(banger_home, tmp_path):
    made = banger_home.run("plugins", "new", NAME, "--dir", str(tmp_path), timeout=120)
    assert made.returncode == 0, made.stderr
    root = tmp_path / f"banger-{NAME.replace('_', '-')}"
    installed = banger_home.run("plugins", "install", "-e", str(root), timeout=600)
    try:
        assert installed.returncode == 0, installed.stderr
        assert "FAILED" not in installed.stdout, installed.stdout
        assert re.search(
            rf"^plugin {NAME} \S+ \(banger-ci-install-check\): loaded$", installed.stdout, re.M
        ), installed.stdout
        listed = banger_home.run("plugins", "list").stdout
        assert re.search(rf"^{NAME}\b.*loaded", listed, re.M), listed
    finally:
        gone = banger_home.run("plugins", "uninstall", NAME, timeout=300)
        assert gone.returncode == 0, gone.stderr
