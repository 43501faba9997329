"""vm ssh-config: Host blocks, and --install adding the Include once."""

from __future__ import annotations

from pathlib import Path

from banger_core.cli.sshinclude import install_include
from banger_core.lifecycle.sshconfig import host_block, render


def test_host_block_names_aliases_and_proxy() -> None:
    vm = {"name": "web", "id": "abc", "ip": "172.30.0.2", "dns_names": ["web.vm", "web.lan"]}
    block = host_block(vm, Path("/k/id_ed25519"), netns="")
    assert "Host web web.vm web.lan\n" in block and "    HostName 172.30.0.2\n" in block
    assert "IdentityFile /k/id_ed25519" in block and "ProxyCommand" not in block
    proxied = host_block(vm, Path("/k"), netns="bgr")
    assert "_fdpass web\n    ProxyUseFdpass yes\n" in proxied
    assert render([], Path("/k"), "").startswith("# Written by banger")


def test_install_include_once_at_the_top(tmp_path: Path) -> None:
    config = tmp_path / ".ssh" / "config"
    assert install_include("/state/ssh/config", config) == (True, config)
    assert install_include("/state/ssh/config", config) == (False, config)
    config.write_text(config.read_text() + "Host other\n    User me\n")
    assert install_include("/state/ssh/config", config)[0] is False
    lines = config.read_text().splitlines()
    assert lines.count("Include /state/ssh/config") == 1
    assert lines.index("Include /state/ssh/config") < lines.index("Host other")


def test_cli_install_and_kept_current_file(banger_daemon, banger_home, tmp_path: Path) -> None:
    home = tmp_path / "userhome"
    home.mkdir()
    first = banger_home.run("vm", "ssh-config", "--install", env={"HOME": str(home)})
    assert first.returncode == 0, first.stderr
    included = first.stdout.split("`Include ", 1)[1].split("`", 1)[0]
    assert Path(included).read_text().startswith("# Written by banger")  # the daemon keeps it
    again = banger_home.run("vm", "ssh-config", "--install", env={"HOME": str(home)})
    assert "already includes" in again.stdout
    user_config = (home / ".ssh" / "config").read_text()
    assert user_config.count(f"Include {included}") == 1
    bad = banger_home.run("vm", "ssh-config", "nosuch")
    assert bad.returncode == 1 and bad.stderr.strip() == "banger: error: no VM 'nosuch'"
