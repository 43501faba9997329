"""Adding banger's SSH config to the user's ``~/.ssh/config`` (once)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def user_ssh_config() -> Path:
    """The invoking user's ``~/.ssh/config``."""
    return Path(os.path.expanduser("~")) / ".ssh" / "config"


def install_include(included: str, config: Path | None = None) -> tuple[bool, Path]:
    """Put ``Include <included>`` at the top of ``config``; ``(changed, path)``.

    At the top because an ``Include`` after a ``Host`` line would only apply
    inside that host's block. Does nothing when the line is already there.
    """
    config = config or user_ssh_config()
    if any(c.isspace() for c in included):
        included = '"' + included + '"'
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


MEMBER_CONFIG = "ssh_config"
"""A member's own SSH config for VMs, in their private directory."""


def member_view(info: dict[str, Any]) -> tuple[str, Path | None]:
    """``vm.ssh_config``'s text as this user can use it, and the directory of key copies.

    Root reads the daemon's key and file as they are. A ``socket_group``
    member (the daemon sent each VM's own key) gets Host blocks naming copies
    of those keys in their private directory, and a ProxyCommand that keeps
    this command's ``BANGER_STATE_DIR`` / ``BANGER_CONFIG``. A VM whose key
    did not come (it booted before VMs had keys) is left out.
    """
    if not info.get("member"):
        return info["text"], None
    from banger_core.cli.fdpass import readable_key
    from banger_core.lifecycle import sshconfig

    hosts = []
    key = None
    for host in info.get("hosts") or []:
        if host.get("key_text"):
            key = readable_key(host)
            hosts.append({**host, "identity": str(key)})
    folder = key.parent if key is not None else None
    return sshconfig.render(hosts, Path("/dev/null"), info.get("netns") or ""), folder


def member_config_path() -> Path:
    """Where a member's kept-current SSH config lives."""
    from banger_core.cli.userdir import private_dir

    return private_dir() / MEMBER_CONFIG


def write_member_config(info: dict[str, Any]) -> Path:
    """Write the member's own SSH config (every VM they may use) and return its path."""
    from banger_core.cli.userdir import write_private

    text, _keys = member_view(info)
    return write_private(member_config_path(), text)


def refresh_member_config() -> None:
    """After a member's create or delete: rewrite their SSH config if they installed it.

    Best effort (the command itself succeeded): a failure is one warning line.
    """
    import click

    from banger_core.cli.context import rpc
    from banger_core.cli.userdir import candidates
    from banger_core.errors import BangerError

    if os.geteuid() == 0 or not any((c / MEMBER_CONFIG).exists() for c in candidates()):
        return
    try:
        write_member_config(rpc("vm.ssh_config", {"refs": []}, autostart=False))
    except (BangerError, OSError) as exc:
        click.echo(f"banger: warning: could not refresh your SSH config for VMs: {exc}", err=True)
