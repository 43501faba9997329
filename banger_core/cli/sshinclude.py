"""Adding banger's SSH config to the user's ``~/.ssh/config`` (once)."""

from __future__ import annotations

import os
from pathlib import Path


def user_ssh_config() -> Path:
    """The invoking user's ``~/.ssh/config``."""
    return Path(os.path.expanduser("~")) / ".ssh" / "config"


def install_include(included: str, config: Path | None = None) -> tuple[bool, Path]:
    """Put ``Include <included>`` at the top of ``config``; ``(changed, path)``.

    At the top because an ``Include`` after a ``Host`` line would only apply
    inside that host's block. Does nothing when the line is already there.
    """
    config = config or user_ssh_config()
    line = f"Include {included}"
    try:
        text = config.read_text()
    except FileNotFoundError:
        text = ""
    if any(raw.strip() == line for raw in text.splitlines()):
        return False, config
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = config.with_name(config.name + ".banger-tmp")
    tmp.write_text(f"# added by `banger vm ssh-config --install`\n{line}\n\n{text}")
    os.chmod(tmp, os.stat(config).st_mode & 0o777 if config.exists() else 0o600)
    tmp.replace(config)
    return True, config
