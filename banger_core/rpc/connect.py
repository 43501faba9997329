"""Reaching the daemon from a client (the CLI, plugin commands); starting it when needed."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from banger_core.errors import DaemonError, DeniedError
from banger_core.paths import Paths
from banger_core.rpc.client import RPCClient

START_TIMEOUT = 60.0  # reconcile and plugin services run before bangerd is ready


def daemon_running(paths: Paths) -> bool:
    """Whether a daemon answers on the socket (raises :class:`DeniedError` when it
    runs but refuses us: that is not "not running")."""
    try:
        with RPCClient(paths.socket, timeout=5.0) as client:
            client.call("daemon.status")
        return True
    except DeniedError:
        raise
    except DaemonError:
        return False


def daemon_ready(paths: Paths) -> bool:
    """Whether a daemon answers and has started its services and plugins.

    ``daemon.status`` answers during start-up too (so ``banger daemon status``
    works while services come up); ``ready`` tells the two apart.
    """
    try:
        with RPCClient(paths.socket, timeout=5.0) as client:
            return bool(client.call("daemon.status").get("ready"))
    except DeniedError:
        raise
    except DaemonError:
        return False


def state_owner(paths: Paths) -> int | None:
    """The uid owning the daemon's state directory (None when it does not exist yet)."""
    for path in (paths.state_dir, paths.run_dir):
        try:
            return os.stat(path).st_uid
        except FileNotFoundError:
            continue
        except OSError:
            return -1  # there, but not even reachable for us: not ours
    return None


def check_may_start(paths: Paths) -> None:
    """Refuse to start a daemon for state that belongs to another user.

    A ``socket_group`` member uses root's daemon; when it is stopped, only
    root can start it (a daemon run by the member could not do anything, and
    trying would write into root's state directory).

    :raise DaemonError: one line saying the daemon is not running and who may start it.
    """
    owner = state_owner(paths)
    me = os.geteuid()
    if owner is None or owner == me or me == 0:
        return
    import pwd

    try:
        who = "root" if owner in (0, -1) else pwd.getpwuid(owner).pw_name
    except KeyError:
        who = f"uid {owner}"
    raise DaemonError(
        f"bangerd is not running (no listener on {paths.socket}); it is {who}'s daemon, "
        f"so only {who} can start it (`sudo banger daemon start`)"
    )


def start_daemon(paths: Paths) -> None:
    """Start ``bangerd`` in the background and wait until it is ready to serve.

    :raise DaemonError: the state belongs to another user (:func:`check_may_start`),
        or the daemon did not come up.
    """
    from banger_core import system

    check_may_start(paths)
    paths.ensure()
    out = paths.log_dir / "bangerd.out"
    with open(out, "ab") as fh:
        proc = system.spawn(
            [sys.executable, "-m", "banger_core.daemon.main"],
            stdout=fh,
            stderr=fh,
            env=dict(os.environ),
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = out.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise DaemonError(f"bangerd exited with {proc.returncode}: {tail[0]} (see {out})")
        if paths.socket.exists() and daemon_ready(paths):
            return
        time.sleep(0.05)
    raise DaemonError(f"bangerd did not start within {START_TIMEOUT:.0f}s (see {out})")


def connect(*, autostart: bool = True) -> RPCClient:
    """A connected client, starting the daemon first if needed."""
    paths = Paths.from_env()
    client = RPCClient(paths.socket)
    try:
        return client.connect()
    except DeniedError:
        raise  # never start a second daemon because this one refused us
    except DaemonError:
        if not autostart:
            raise
    start_daemon(paths)
    return RPCClient(paths.socket).connect()


def rpc(method: str, params: dict[str, Any] | None = None, *, autostart: bool = True) -> Any:
    """Call one daemon method and return its result."""
    with connect(autostart=autostart) as client:
        return client.call(method, params)
