"""Records of the host resources a simulator made, and their removal.

Before the simulator creates a resource (network namespace, veth, loop
device, guest process, directory) it writes it into a JSON state file under
the run directory (``$BANGER_FCSIM_RUN_DIR``, default ``/run/banger-fcsim``).
:func:`cleanup_state` removes everything recorded there; it is idempotent and
runs on every way out: normal exit, SIGTERM/SIGINT, the watchdog after a
SIGKILL, and ``banger-fcsim --cleanup``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from banger_core import system

NETNS_PREFIX = "bgr-fcsim-"
VETH_PREFIX = "bgrfc"


def run_dir() -> Path:
    """The simulator's runtime directory."""
    return Path(os.environ.get("BANGER_FCSIM_RUN_DIR") or "/run/banger-fcsim")


def proc_starttime(pid: int) -> int | None:
    """The start time (clock ticks since boot) of ``pid``, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[-1].split()
    try:
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def same_process(pid: int | None, starttime: int | None) -> bool:
    """True when ``pid`` is alive and is the process recorded (not a reused PID)."""
    if not pid:
        return False
    now = proc_starttime(pid)
    return now is not None and (starttime is None or now == starttime)


def ns_inode(path: str) -> int | None:
    """Inode of a namespace file, or None."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class StateFile:
    """The JSON record of one simulator's resources (written before each creation)."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def create(cls, token: str, **fields: Any) -> StateFile:
        """Create ``<run_dir>/<token>.json`` describing this simulator."""
        base = run_dir()
        base.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "token": token,
            "pid": os.getpid(),
            "pid_start": proc_starttime(os.getpid()),
            "net_ns_inode": ns_inode("/proc/self/ns/net"),
            "netns": None,
            "veths": [],
            "loops": [],
            "procs": [],
            "dirs": [],
            **fields,
        }
        st = cls(base / f"{token}.json", data)
        st.save()
        return st

    @classmethod
    def load(cls, path: Path) -> StateFile | None:
        """Read a state file (None when missing or unreadable)."""
        try:
            return cls(path, json.loads(path.read_text()))
        except (OSError, ValueError):
            return None

    def save(self) -> None:
        """Write atomically."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)

    def add(self, key: str, value: Any) -> None:
        """Append to a list field and save."""
        self.data.setdefault(key, []).append(value)
        self.save()

    def set(self, key: str, value: Any) -> None:
        """Set a field and save."""
        self.data[key] = value
        self.save()


NETNS_LOCK_DIR = Path("/run/lock/banger-fcsim")
"""Host-wide: a live simulator holds ``<netns name>.lock`` here (flock) for its namespace."""


def hold_netns_lock(name: str) -> int:
    """Take the liveness lock of namespace ``name``; the returned fd is held for life.

    Every installation sees this lock, whatever mount namespace it runs in
    (``ip netns exec`` hides the namespace's bind mount, not this file).
    """
    NETNS_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(NETNS_LOCK_DIR / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


@contextlib.contextmanager
def netns_unused(name: str) -> Any:
    """Yield True (holding its lock) when no live simulator holds namespace ``name``."""
    path = NETNS_LOCK_DIR / f"{name}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    finally:
        os.close(fd)


def _netns_name_for_inode(inode: int | None) -> str | None:
    if inode is None:
        return None
    with contextlib.suppress(OSError):
        for name in os.listdir("/run/netns"):
            if ns_inode(f"/run/netns/{name}") == inode:
                return name
    return None


def _ip_in(ns_inode_value: int | None, args: list[str]) -> None:
    """Run ``ip`` in the network namespace with that inode (here, or a named one)."""
    if ns_inode_value is None or ns_inode_value == ns_inode("/proc/self/ns/net"):
        system.run(["ip", *args], check=False, timeout=10)
        return
    name = _netns_name_for_inode(ns_inode_value)
    if name is not None:
        system.run(["ip", "-n", name, *args], check=False, timeout=10)
    # Otherwise the namespace is gone, and the interface with it.


def loop_backing(dev: str) -> str | None:
    """The backing file of ``/dev/loopN`` from sysfs, or None when detached."""
    name = os.path.basename(dev)
    try:
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    except OSError:
        return None


def detach_loop(dev: str, backing: str, timeout: float = 3.0) -> None:
    """Detach ``dev`` if it still maps ``backing``; wait for an autoclear to finish."""
    deadline = time.monotonic() + timeout
    tried = False
    while time.monotonic() < deadline:
        current = loop_backing(dev)
        if current is None or os.path.realpath(
            current.removesuffix(" (deleted)")
        ) != os.path.realpath(backing):
            return
        if not tried:
            system.run(["losetup", "--detach", dev], check=False, timeout=10)
            tried = True
        time.sleep(0.05)


def _kill_recorded(procs: list[dict[str, Any]]) -> None:
    live = []
    for rec in procs:
        pid, start = rec.get("pid"), rec.get("start")
        if isinstance(pid, int) and same_process(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            live.append((pid, start))
    deadline = time.monotonic() + 5.0
    while live and time.monotonic() < deadline:
        for pid, _ in list(live):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        live = [(p, s) for p, s in live if same_process(p, s)]
        if live:
            time.sleep(0.02)


def cleanup_state(path: Path, *, force: bool = False) -> bool:
    """Remove every resource recorded in ``path`` and the file itself.

    Skips (returns False) when the recorded simulator is still alive, unless
    ``force``. Safe to run concurrently: a lock serializes cleaners.
    """
    try:
        lock_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        st = StateFile.load(path)
        if st is None:
            return True
        data = st.data
        owner_alive = same_process(data.get("pid"), data.get("pid_start"))
        if owner_alive and not force and data.get("pid") != os.getpid():
            return False
        _kill_recorded(list(data.get("procs") or []))
        for veth in data.get("veths") or []:
            _ip_in(data.get("net_ns_inode"), ["link", "del", veth])
        netns = data.get("netns")
        if netns and os.path.exists(f"/run/netns/{netns}"):
            system.run(["ip", "netns", "del", netns], check=False, timeout=10)
        if netns:
            with contextlib.suppress(FileNotFoundError):
                (NETNS_LOCK_DIR / f"{netns}.lock").unlink()
        for loop in data.get("loops") or []:
            detach_loop(loop["dev"], loop["backing"])
        for group in data.get("cgroups") or []:
            from banger_fcsim.memcg import remove, unmount

            remove(group["group"])
            if group.get("mount"):
                unmount(group["mount"])
        for d in reversed(data.get("dirs") or []):
            with contextlib.suppress(OSError):
                shutil.rmtree(d)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    finally:
        os.close(lock_fd)


def list_states() -> list[Path]:
    """Every state file in the run directory."""
    base = run_dir()
    try:
        return sorted(p for p in base.iterdir() if p.suffix == ".json")
    except OSError:
        return []


def cleanup_leftovers(vm_id: str | None = None, all_: bool = False) -> list[str]:
    """``banger-fcsim --cleanup``: remove leftovers of dead simulators; return what was done."""
    done = []
    for path in list_states():
        st = StateFile.load(path)
        if st is None:
            continue
        if not all_ and vm_id is not None and st.data.get("vm_id") != vm_id:
            continue
        if cleanup_state(path):
            done.append(f"removed leftovers of {st.data.get('vm_id')} ({path.name})")
        else:
            done.append(f"skipped {path.name}: simulator pid {st.data.get('pid')} is running")
    if all_:
        # Namespaces named like ours with no state file here (a lost run
        # directory). One with processes in it may belong to a simulator
        # using another run directory, so only empty ones are removed.
        known = set()
        for path in list_states():
            st = StateFile.load(path)
            if st and st.data.get("netns"):
                known.add(st.data["netns"])
        with contextlib.suppress(OSError):
            for name in os.listdir("/run/netns"):
                if name.startswith(NETNS_PREFIX) and name not in known:
                    with netns_unused(name) as unused:
                        # The lock decides: another installation's simulator may
                        # run in a mount namespace that hides its netns mount.
                        if not unused:
                            done.append(f"skipped namespace {name}: a live simulator holds it")
                            continue
                        if _netns_pids(name):
                            done.append(f"skipped namespace {name}: processes still run in it")
                            continue
                        system.run(["ip", "netns", "del", name], check=False, timeout=10)
                    done.append(f"removed orphan namespace {name}")
    return done


def _netns_pids(name: str) -> list[int]:
    res = system.run(["ip", "netns", "pids", name], check=False, timeout=10)
    return [int(word) for word in res.stdout.split() if word.isdigit()]


def pid_is_gone_error(exc: OSError) -> bool:
    """True for errors meaning the process no longer exists."""
    return exc.errno in (errno.ESRCH, errno.ECHILD)
