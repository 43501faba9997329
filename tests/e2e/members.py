"""Running banger as real unprivileged users the tests create (``socket_group`` members).

The CLI runs under Debian's ``/usr/bin/python3`` (our development interpreter
lives under /root, which other users cannot read), with a clean environment.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from banger_core import system
from pytest_banger.simhost import SimulatedHost


@dataclass(frozen=True)
class Users:
    """A group, two members of it (``owner`` creates VMs, ``other`` does not) and a stranger."""

    group: str
    owner: str
    other: str
    stranger: str

    def uid(self, user: str) -> int:
        """``user``'s uid."""
        return pwd.getpwnam(user).pw_uid


@contextmanager
def made_users() -> Iterator[Users]:
    """Create the users (no home directories); remove them afterwards."""
    token = secrets.token_hex(3)
    users = Users(f"bgg{token}", f"bgo{token}", f"bgm{token}", f"bgs{token}")
    system.run(["groupadd", users.group])
    try:
        for member in (users.owner, users.other):
            system.run(
                ["useradd", "--no-create-home", "--shell", "/bin/sh", "-G", users.group, member]
            )
        system.run(["useradd", "--no-create-home", "--shell", "/bin/sh", users.stranger])
        yield users
    finally:
        for user in (users.owner, users.other, users.stranger):
            try:
                uid = pwd.getpwnam(user).pw_uid
            except KeyError:
                continue
            system.run(["userdel", user], check=False)
            # What the tests' runs left as that user: the home some tests give it and the
            # CLI's private runtime directory (/tmp/banger-<uid>, used without a home).
            for leftover in (f"/tmp/{user}-home", f"/tmp/banger-{uid}"):
                shutil.rmtree(leftover, ignore_errors=True)
        system.run(["groupdel", users.group], check=False)


def configure_group(host: SimulatedHost, users: Users, image_dir: str, extra: str = "") -> None:
    """Give ``host``'s daemon the group and allowed image directory (before it starts)."""
    config = host.config_path.read_text().replace(
        "[daemon]\n",
        f'[daemon]\nsocket_group = "{users.group}"\nallowed_image_dirs = ["{image_dir}"]\n' + extra,
        1,
    )
    host.config_path.write_text(config)
    os.chmod(host.root, 0o711)  # the test's own temp dir: let others traverse it


def pythonpath() -> str:
    """Our packages' directories, for ``/usr/bin/python3`` run as another user.

    Editable installs are found through an import hook that ``PYTHONPATH``
    does not run: each plugin package's parent directory is added too.
    """
    import importlib.metadata
    import importlib.util

    dirs = [p for p in sys.path if p and not p.startswith("/root")]
    packages = [e.module.split(".")[0] for e in importlib.metadata.entry_points(group="banger")]
    for package in [*packages, "banger_core", "banger_vmmkit", "pytest_banger"]:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            parent = str(Path(spec.origin).parent.parent)
            if parent not in dirs:
                dirs.append(parent)
    return ":".join(dirs)


def member_env(host: SimulatedHost | None, user: str, *, home: str | None = None) -> list[str]:
    """``env -i`` arguments: a clean environment pointing at ``host`` (when given)."""
    env = [
        "env",
        "-i",
        "PATH=/usr/bin:/bin",
        f"HOME={home if home is not None else f'/tmp/{user}-home'}",
        f"PYTHONPATH={pythonpath()}",
    ]
    if host is not None:
        env += [f"BANGER_STATE_DIR={host.state_dir}", f"BANGER_CONFIG={host.config_path}"]
    return env


def banger_as(
    host: SimulatedHost, user: str, *args: str, home: str | None = None, timeout: float = 300
) -> system.Result:
    """Run ``banger ARGS`` as ``user`` against ``host``."""
    return system.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            *member_env(host, user, home=home),
            "/usr/bin/python3",
            "-m",
            "banger_core.cli.main",
            *args,
        ],
        check=False,
        timeout=timeout,
    )


def python_as(host: SimulatedHost, user: str, code: str) -> system.Result:
    """Run Python ``code`` as ``user`` (raw RPC, the CLI's own checks bypassed)."""
    return system.run(
        ["runuser", "-u", user, "--", *member_env(host, user), "/usr/bin/python3", "-c", code],
        check=False,
        timeout=60,
    )


def raw_rpc(host: SimulatedHost, user: str, method: str, params: dict) -> str:
    """Call ``method`` over the socket as ``user``; ``ok <result>`` or ``<Error> <message>``."""
    code = (
        "from banger_core.rpc.client import RPCClient\n"
        "from banger_core.paths import Paths\n"
        "c = RPCClient(Paths.from_env().socket).connect()\n"
        "try:\n"
        f"    print('ok', c.call({method!r}, {params!r}))\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    result = python_as(host, user, code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def bangerds_of(user: str) -> list[int]:
    """PIDs of daemons running as ``user`` (a member must never start one)."""
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
