"""Start and find Firecracker processes (the real binary or ``banger-fcsim``).

The daemon runs both through this one code path: only ``binary`` differs.
A VMM is identified by its API socket: ``find_vmm_pid`` scans
``/proc/*/cmdline`` for ``--api-sock <sock>``, which is how a stale PID in the
store is rediscovered.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from banger_core import system
from banger_core.errors import BangerError, ConflictError, ValidationError
from banger_core.firecracker.client import FirecrackerClient
from banger_core.firecracker.models import valid_vm_id

__all__ = [
    "VMMProcess",
    "VMMStartError",
    "find_vmm_pid",
    "launch_vmm",
    "pid_alive",
    "wait_for_exit",
]


class VMMStartError(BangerError):
    """The VMM process did not come up (exited, or its API never answered)."""

    code = "vmm_start"


def _proc_state(pid: int) -> str | None:
    """Return the one-letter state of ``pid`` from /proc, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # comm may contain spaces or parentheses: the state follows the last ')'.
    tail = data.rsplit(b")", 1)[-1].split()
    return tail[0].decode() if tail else None


def pid_alive(pid: int) -> bool:
    """Return True when ``pid`` exists and is not a zombie."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` is gone (zombies count as gone); return True if it went.

    Works for processes that are not our children: uses a pidfd when the
    kernel offers one, otherwise polls /proc.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True
        except OSError:
            pidfd = None
    try:
        while True:
            if not pid_alive(pid):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            step = min(remaining, 0.05)
            if pidfd is not None:
                # A pidfd becomes readable when the process exits (even if not reaped).
                ready, _, _ = select.select([pidfd], [], [], min(remaining, 0.5))
                if ready:
                    return True
            else:
                time.sleep(step)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _sock_matches(arg: str, api_sock: Path, cwd: str | None) -> bool:
    if arg == str(api_sock):
        return True
    candidate = Path(arg)
    if not candidate.is_absolute() and cwd:
        candidate = Path(cwd) / candidate
    try:
        return os.path.normpath(candidate) == os.path.normpath(api_sock.absolute())
    except OSError:
        return False


def find_vmm_pid(api_sock: Path | str) -> int | None:
    """Return the PID of the live process started with ``--api-sock <api_sock>``."""
    api_sock = Path(api_sock)
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        args = _cmdline(pid)
        for i, arg in enumerate(args):
            value = None
            if arg == "--api-sock" and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith("--api-sock="):
                value = arg.split("=", 1)[1]
            if value is None:
                continue
            cwd = None
            if not value.startswith("/"):
                with contextlib.suppress(OSError):
                    cwd = os.readlink(f"/proc/{pid}/cwd")
            if _sock_matches(value, api_sock, cwd) and pid_alive(pid):
                return pid
    return None


def _socket_answers(api_sock: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(0.5)
    try:
        sock.connect(str(api_sock))
    except OSError:
        return False
    finally:
        sock.close()
    return True


class VMMProcess:
    """A running VMM: its PID and API socket, and (when we started it) its Popen."""

    def __init__(
        self,
        pid: int,
        api_sock: Path,
        popen: Any = None,
        console_path: Path | None = None,
    ) -> None:
        self.pid = pid
        self.api_sock = Path(api_sock)
        self.popen = popen
        self.console_path = console_path

    def __repr__(self) -> str:
        return f"VMMProcess(pid={self.pid}, api_sock={str(self.api_sock)!r})"

    @property
    def returncode(self) -> int | None:
        """Exit status when we started it and it ended (negative = killed by signal)."""
        if self.popen is None:
            return None
        code: int | None = self.popen.poll()
        return code

    def is_alive(self) -> bool:
        """Return True while the process runs (zombies count as dead)."""
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for exit; return True when it exited."""
        if self.popen is not None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.popen.poll() is None:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
            return True
        return wait_for_exit(self.pid, 1e9 if timeout is None else timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the VMM (no error when it is already gone)."""
        if not self.is_alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def client(self, timeout: float = 5.0) -> FirecrackerClient:
        """A client for this VMM's API socket."""
        return FirecrackerClient(self.api_sock, timeout=timeout)


def _tail(path: Path | None, lines: int = 10) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def launch_vmm(
    binary: str | Path,
    api_sock: Path | str,
    vm_id: str,
    *,
    log_path: Path | str | None,
    console_path: Path | str,
    extra_env: Mapping[str, str] | None = None,
    extra_args: list[str] | None = None,
    start_timeout: float = 3.0,
) -> VMMProcess:
    """Start ``<binary> --api-sock <sock> --id <vm_id>`` and wait for its API.

    Refuses when a VMM already answers on ``api_sock``; removes a stale socket
    file otherwise. stdout and stderr (the serial console) are appended to
    ``console_path``. Returns once the socket exists and ``GET /machine-config``
    answers; raises :class:`VMMStartError` with the console's last lines if the
    process exits first or the timeout passes (the process is then killed).
    ``log_path`` (optional) is created so the caller can ``PUT /logger`` to it.
    """
    api_sock = Path(api_sock)
    console_path = Path(console_path)
    if not valid_vm_id(vm_id):
        raise ValidationError(
            f"invalid VM id {vm_id!r}: Firecracker allows 1-64 characters of A-Z, a-z, 0-9 and '-'"
        )
    if os.path.lexists(api_sock):
        if _socket_answers(api_sock):
            pid = find_vmm_pid(api_sock)
            who = f" (pid {pid})" if pid else ""
            raise ConflictError(f"a VMM is already listening on API socket {api_sock}{who}")
        try:
            api_sock.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise VMMStartError(f"cannot remove stale API socket {api_sock}: {exc}") from None
    api_sock.parent.mkdir(parents=True, exist_ok=True)
    console_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(log_path).touch(exist_ok=True)
    argv = [str(binary), "--api-sock", str(api_sock), "--id", vm_id, *(extra_args or [])]
    with open(console_path, "ab") as console:
        proc = system.spawn(
            argv,
            stdout=console,
            stderr=console,
            env=dict(extra_env) if extra_env else None,
            new_session=True,
        )
    vmm = VMMProcess(proc.pid, api_sock, proc, console_path)
    client = FirecrackerClient(api_sock, timeout=0.5)
    deadline = time.monotonic() + start_timeout
    try:
        while True:
            code = proc.poll()
            if code is not None:
                tail = _tail(console_path)
                detail = f":\n{tail}" if tail else ""
                raise VMMStartError(
                    f"{binary} exited with status {code} before its API socket {api_sock} "
                    f"answered (console {console_path}){detail}"
                )
            if api_sock.exists() and client.ping(timeout=0.5):
                return vmm
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        with contextlib.suppress(OSError):
            proc.kill()
        VMMProcess(proc.pid, api_sock, proc).wait(2)
        tail = _tail(console_path)
        detail = f":\n{tail}" if tail else ""
        raise VMMStartError(
            f"{binary} did not answer on API socket {api_sock} within {start_timeout:g}s "
            f"(console {console_path}){detail}"
        )
    finally:
        client.close()


def remove_stale_socket(path: Path | str) -> bool:
    """Remove a socket file nothing listens on; return True when removed."""
    path = Path(path)
    if not os.path.lexists(path) or _socket_answers(path):
        return False
    try:
        path.unlink()
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
    return True
