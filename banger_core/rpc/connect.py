"""Reaching the daemon from a client (the CLI, plugin commands); starting it when needed.

The first connection of a process also compares the daemon's version with
its own (:func:`check_daemon_version`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from banger_core.errors import DaemonError, DeniedError, NotFoundError
from banger_core.paths import Paths
from banger_core.rpc.client import RPCClient

START_TIMEOUT = 60.0  # reconcile and plugin services run before bangerd is ready
STARTED_BY_ENV = "BANGER_DAEMON_STARTED_BY"
"""Set by the CLI for the ``bangerd`` it starts; the daemon reports it in ``daemon.version``."""

_version_checked = False  # the first connection of a CLI process compares versions


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

    The daemon learns it was started by the CLI (``daemon.version`` reports
    ``started_by: "banger"``), so a later CLI of a newer version may replace it.

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
            env={**os.environ, STARTED_BY_ENV: "banger"},
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
    """A connected client, starting the daemon first if needed.

    The first connection of a CLI process compares the daemon's version with
    the CLI's (:func:`check_daemon_version`).
    """
    paths = Paths.from_env()
    client = RPCClient(paths.socket)
    try:
        client.connect()
    except DeniedError:
        raise  # never start a second daemon because this one refused us
    except DaemonError:
        if not autostart:
            raise
        start_daemon(paths)
        client = RPCClient(paths.socket).connect()
    if _version_checked:
        return client
    try:
        replaced = check_daemon_version(client, paths, may_replace=autostart)
    except BaseException:
        client.close()
        raise
    if not replaced:
        return client
    client.close()
    return RPCClient(paths.socket).connect()


def skip_version_check() -> None:
    """Do not compare versions in this process (``banger daemon ...`` manages the daemon)."""
    global _version_checked
    _version_checked = True


def check_daemon_version(client: RPCClient, paths: Paths, *, may_replace: bool) -> bool:
    """Compare the running daemon's version with this CLI's; say so when they differ.

    Runs once per CLI process. When they differ, root replaces an older
    daemon that the banger CLI started (not one a service manager runs, and
    not while operations are in progress) and says so on stderr; everyone
    else gets a one-line warning naming both versions and the fix. Returns
    True when the daemon was replaced (``client`` then talks to the old one).
    """
    global _version_checked
    import banger_core

    _version_checked = True
    try:
        info = client.call("daemon.version")
    except NotFoundError:  # a daemon from before daemon.version
        info = client.call("daemon.status")
    theirs = str(info.get("version", "unknown"))
    ours = banger_core.__version__
    if theirs == ours:
        return False
    pid = info.get("pid", "?")
    replaceable = (
        may_replace
        and os.geteuid() == 0
        and info.get("started_by") == "banger"
        and not info.get("operations")
        and _older(theirs, ours)
    )
    if not replaceable:
        print(
            f"banger: warning: bangerd {theirs} (pid {pid}) is running, but this banger is "
            f"{ours}; restart it to use this version: banger daemon restart",
            file=sys.stderr,
        )
        return False
    print(
        f"banger: bangerd {theirs} (pid {pid}) is older than this banger {ours}; "
        "restarting it (VMs keep running)",
        file=sys.stderr,
    )
    client.close()
    _replace_daemon(paths, int(pid))
    return True


def _replace_daemon(paths: Paths, pid: int, timeout: float = 30.0) -> None:
    """Stop the daemon ``pid`` (VMs keep running), wait until it is gone, start a new one."""
    with RPCClient(paths.socket, timeout=10.0) as old:
        old.call("daemon.stop")
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise DaemonError(f"bangerd (pid {pid}) did not exit within {timeout:.0f}s")
        time.sleep(0.05)
    start_daemon(paths)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _older(theirs: str, ours: str) -> bool:
    """Whether version ``theirs`` sorts before ``ours`` (numeric parts; unknown: no)."""

    def key(version: str) -> tuple[int, ...] | None:
        parts = version.split("+")[0].split(".")
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None

    a, b = key(theirs), key(ours)
    return a is not None and b is not None and a < b


def rpc(method: str, params: dict[str, Any] | None = None, *, autostart: bool = True) -> Any:
    """Call one daemon method and return its result."""
    with connect(autostart=autostart) as client:
        return client.call(method, params)
