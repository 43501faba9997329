"""The CLI side of ``vm exec``: a stream the daemon opened, driven from this process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from banger_core import BangerError, ValidationError
from banger_vsock import protocol as p

AGENT_LOST = 255
"""``vm exec``'s exit status when the agent's stream broke (VM killed) or made no sense."""


def parse_env(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``K=V`` strings to a dict; a bad one is a one-line error."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if (
            not sep
            or not key
            or not (key[0].isalpha() or key[0] == "_")
            or not all(c.isalnum() or c == "_" for c in key)
        ):
            raise ValidationError(f"--env {pair!r} is not NAME=VALUE (NAME: letters, digits, _)")
        env[key] = value
    return env


def open_agent(ref: str) -> p.AgentConnection:
    """Ask the daemon for a connection to ``ref``'s guest agent (handed over as a descriptor)."""
    from banger_core import connect

    with connect() as client:
        _info, fd = client.call_with_fd("vm.agent_connect", {"ref": ref})
    return p.AgentConnection(socket.socket(fileno=fd))


def _winsize() -> list[int] | None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return [size.lines, size.columns]


def _pump_stdin(conn: p.AgentConnection) -> None:
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            conn.send(p.F_STDIN, data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        conn.send(p.F_STDIN, b"")


def _write_all(fd: int, data: bytes) -> bool:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        return False
    return True


def run_exec(
    ref: str,
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    tty: bool,
    *,
    conn: p.AgentConnection | None = None,
) -> int:
    """Run ``argv`` in the VM; return the exit status banger should exit with."""
    conn = conn or open_agent(ref)
    body: dict[str, Any] = {"argv": argv, "env": env, "tty": tty}
    if cwd is not None:
        body["cwd"] = cwd
    if tty:
        body["term"] = os.environ.get("TERM", "xterm")
        body["winsize"] = _winsize()
    with conn:
        try:
            conn.open_stream("/exec", body)
        except p.AgentError as exc:
            raise BangerError(f"vm exec {ref}: {exc}") from None
        return _drive(conn, tty)


def _drive(conn: p.AgentConnection, tty: bool) -> int:
    raw_tty = tty and os.isatty(0)
    saved: Any = None
    if raw_tty:
        import termios
        import tty as ttymod

        saved = termios.tcgetattr(0)
        ttymod.setraw(0)
    previous: dict[int, Any] = {}

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(OSError):
            conn.send(p.F_SIGNAL, str(signum).encode())

    def resize(_signum: int, _frame: Any) -> None:
        size = _winsize()
        if size:
            with contextlib.suppress(OSError):
                conn.send(p.F_WINSIZE, f"{size[0]} {size[1]}".encode())

    handlers: dict[int, Callable[[int, Any], None]] = {
        signal.SIGINT: forward,
        signal.SIGTERM: forward,
        signal.SIGHUP: forward,
    }
    if tty:
        handlers[signal.SIGWINCH] = resize
    for sig_num, fn in handlers.items():
        previous[sig_num] = signal.signal(sig_num, fn)
    threading.Thread(target=_pump_stdin, args=(conn,), daemon=True).start()
    out_ok = err_ok = True
    try:
        while True:
            try:
                kind, payload = conn.recv()
            except p.AgentError as exc:
                click.echo(f"banger: error: {exc}", err=True)
                return AGENT_LOST
            if kind == p.F_STDOUT:
                out_ok = out_ok and _write_all(1, payload)
            elif kind == p.F_STDERR:
                err_ok = err_ok and _write_all(2, payload)
            elif kind == p.F_EXIT:
                try:
                    info = p.exit_status(payload)
                except p.AgentError as exc:
                    click.echo(f"banger: error: {exc}", err=True)
                    return AGENT_LOST
                if info.get("error"):
                    if saved is not None:
                        _restore(saved)
                        saved = None
                    click.echo(f"banger: error: {info['error']}", err=True)
                return p.shell_exit_code(info)
    finally:
        for sig_num, old in previous.items():
            signal.signal(sig_num, old)
        if saved is not None:
            _restore(saved)


def _restore(saved: Any) -> None:
    import termios

    with contextlib.suppress(OSError, termios.error):
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
