"""`[daemon] socket_group` with real unprivileged users created by the test."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_core import system
from pytest_banger.simhost import SimulatedHost

pytestmark = [pytest.mark.net, pytest.mark.slow]


@pytest.fixture
def users() -> Iterator[tuple[str, str, str]]:
    """A group, a member of it and a stranger; removed afterwards."""
    token = secrets.token_hex(3)
    group, member, stranger = f"bgg{token}", f"bgm{token}", f"bgs{token}"
    system.run(["groupadd", group])
    try:
        system.run(["useradd", "--no-create-home", "--shell", "/bin/sh", "-G", group, member])
        system.run(["useradd", "--no-create-home", "--shell", "/bin/sh", stranger])
        yield group, member, stranger
    finally:
        for user in (member, stranger):
            system.run(["userdel", user], check=False)
        system.run(["groupdel", group], check=False)


def _as(host: SimulatedHost, user: str, *args: str, check: bool = False) -> system.Result:
    """Run the CLI as ``user`` with the system Python (ours lives under /root)."""
    pythonpath = ":".join(p for p in sys.path if p and not p.startswith("/root"))
    env = [
        "env",
        "-i",
        "PATH=/usr/bin:/bin",
        f"HOME=/tmp/{user}-home",
        f"BANGER_STATE_DIR={host.state_dir}",
        f"BANGER_CONFIG={host.config_path}",
        f"PYTHONPATH={pythonpath}",
    ]
    return system.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            *env,
            "/usr/bin/python3",
            "-m",
            "banger_core.cli.main",
            *args,
        ],
        check=check,
        timeout=300,
    )


def _python_as(host: SimulatedHost, user: str, code: str) -> system.Result:
    pythonpath = ":".join(p for p in sys.path if p and not p.startswith("/root"))
    return system.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"BANGER_STATE_DIR={host.state_dir}",
            f"PYTHONPATH={pythonpath}",
            "/usr/bin/python3",
            "-c",
            code,
        ],
        check=False,
        timeout=60,
    )


def _bangerds_of(user: str) -> list[int]:
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (
                entry.stat().st_uid == uid
                and b"banger_core.daemon" in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_socket_group_members_use_vms_strangers_are_told_why(debian_image, users):
    group, member, stranger = users
    image_dir = str(Path(debian_image.rootfs).parent)
    with SimulatedHost() as host:
        config = host.config_path.read_text().replace(
            "[daemon]\n",
            f'[daemon]\nsocket_group = "{group}"\nallowed_image_dirs = ["{image_dir}"]\n',
            1,
        )
        host.config_path.write_text(config)
        os.chmod(host.root, 0o711)  # the test's own temp dir: let others traverse it
        host.start()
        host.register_image(debian_image)

        # A member: every VM command works, ssh included (no root, no nsenter).
        listed = _as(host, member, "vm", "list")
        assert listed.returncode == 0, listed.stderr
        created = _as(host, member, "vm", "create", "team", "--memory", "256")
        assert created.returncode == 0, created.stderr
        ssh = _as(host, member, "vm", "ssh", "team", "--", "hostname")
        assert ssh.returncode == 0 and ssh.stdout.strip() == "team", ssh.stderr
        status = _as(host, member, "daemon", "status")
        assert status.returncode == 0 and "running" in status.stdout

        # ... but may not make the daemon read arbitrary host files.
        evil = _as(
            host,
            member,
            "image",
            "register",
            "evil",
            "--kernel",
            "/etc/passwd",
            "--rootfs",
            "/etc/passwd",
        )
        assert evil.returncode == 1
        assert "'/etc/passwd' is not allowed" in evil.stderr, evil.stderr
        assert "internal error" not in evil.stderr
        # The same over the socket directly (the CLI's own checks bypassed).
        raw = _python_as(
            host,
            member,
            (
                "from banger_core.rpc.client import RPCClient\n"
                "from banger_core.paths import Paths\n"
                "c = RPCClient(Paths.from_env().socket).connect()\n"
                "try:\n"
                "    c.call('image.register', {'name': 'evil', 'kernel': '/etc/shadow',"
                " 'rootfs': '/etc/shadow'})\n"
                "except Exception as e:\n"
                "    print(type(e).__name__, e)\n"
            ),
        )
        assert "ForbiddenError" in raw.stdout and "/etc/shadow" in raw.stdout, raw
        assert "evil" not in _as(host, member, "image", "list").stdout
        ok = _as(
            host,
            member,
            "image",
            "register",
            "mine",
            "--kernel",
            str(debian_image.kernel),
            "--rootfs",
            str(debian_image.rootfs),
            "--initrd",
            str(debian_image.initrd),
            "--work-seed",
            str(debian_image.work_seed),
        )
        assert ok.returncode == 0, ok.stderr

        # A stranger: told "permission denied" (not "not running"), no daemon of its own.
        for args in (("vm", "list"), ("daemon", "status")):
            denied = _as(host, stranger, *args)
            assert denied.returncode != 0
            assert "permission denied" in denied.stderr, denied.stderr
            assert "not running" not in denied.stdout + denied.stderr
        assert _bangerds_of(stranger) == []

        assert _as(host, member, "vm", "delete", "--force", "team").returncode == 0
        assert _as(host, member, "image", "delete", "mine").returncode == 0
