"""The one module that runs external programs.

Every ``subprocess`` use in banger goes through here (a test enforces it):
argument lists only (never a shell), a timeout on everything that waits, and
the program's stderr carried in the raised :class:`CommandError`.

Code that runs commands takes a :class:`Runner` so tests can inject failures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

from banger_core.errors import BangerError, CommandError

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Result:
    """What a finished command produced."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Something that runs a command and returns its :class:`Result`."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result: ...


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Result:
    """Run ``argv`` to completion and return its output.

    Raises :class:`CommandError` when the program exits non-zero (with
    ``check``), times out, or is missing.
    """
    args = [str(a) for a in argv]
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(
            args,
            executable=_resolve(args[0], full_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=full_env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(args, None, stderr) from None
    except FileNotFoundError:
        raise CommandError(args, 127, f"{args[0]}: command not found") from None
    result = Result(args, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stderr or proc.stdout)
    return result


def run_as(uid: int, argv: Sequence[str], *, timeout: float | None = DEFAULT_TIMEOUT) -> Result:
    """Run ``argv`` to completion as user ``uid`` (their primary and supplementary groups).

    For doing something with a ``socket_group`` member's permissions, never
    root's (reading a host path the member named). Never raises for a
    non-zero exit; a missing program or a timeout raises :class:`CommandError`.
    """
    import pwd

    try:
        account = pwd.getpwuid(uid)
        gid, groups = account.pw_gid, os.getgrouplist(account.pw_name, account.pw_gid)
    except KeyError:
        gid, groups = uid, []  # no account: no supplementary groups either
    args = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=uid,
            group=gid,
            extra_groups=groups,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            cwd="/",
        )
    except subprocess.TimeoutExpired:
        raise CommandError(args, None, "timed out") from None
    except FileNotFoundError:
        raise CommandError(args, 127, f"{args[0]}: command not found") from None
    return Result(args, proc.returncode, proc.stdout, proc.stderr)


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    new_session: bool = True,
    pass_fds: Sequence[int] = (),
    preexec_fn: Callable[[], object] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running program and return its ``Popen`` handle.

    ``new_session`` detaches it from the caller's terminal and process group,
    so a Ctrl-C in the CLI never reaches VMMs or the daemon.
    """
    args = [str(a) for a in argv]
    full_env = None if env is None else {**os.environ, **env}
    try:
        return subprocess.Popen(
            args,
            executable=_resolve(args[0], full_env),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=full_env,
            cwd=cwd,
            start_new_session=new_session,
            pass_fds=tuple(pass_fds),
            preexec_fn=preexec_fn,
            close_fds=True,
        )
    except FileNotFoundError:
        raise BangerError(f"cannot run {args[0]}: not found") from None


SBIN = ":/usr/local/sbin:/usr/sbin:/sbin"
"""Searched after ``PATH`` (a root shell's ``PATH`` may lack them, e.g. after ``su``)."""


def which(program: str) -> str | None:
    """Return the full path of ``program`` on PATH (sbin included), or None."""
    return shutil.which(program, path=os.environ.get("PATH", "") + SBIN)


def _resolve(program: str, env: Mapping[str, str] | None) -> str | None:
    """Where :func:`run` and :func:`spawn` find ``program``: as :func:`which` does.

    So a program ``doctor`` reports as found is the one that runs. None (the
    OS then searches ``PATH`` itself) for paths and for programs not found.
    """
    if "/" in program:
        return None
    path = (os.environ if env is None else env).get("PATH", "")
    return shutil.which(program, path=path + SBIN)


def exec_replace(argv: Sequence[str]) -> None:
    """Replace the current process with ``argv`` (``banger vm ssh``); never returns."""
    args = [str(a) for a in argv]
    try:
        os.execvp(args[0], args)
    except FileNotFoundError:
        raise BangerError(f"cannot run {args[0]}: not found") from None
