"""Fixtures for the simulator tests: a short temp dir, a simulator runner, a test netns."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_core import system
from banger_core.firecracker.launcher import wait_for_exit
from pytest_banger.fcsim import fcsim_binary, host_leftovers, state_tokens
from pytest_banger.kernels import synthetic_kernel


@pytest.fixture
def fc_tmp() -> Iterator[Path]:
    """A short temporary directory (AF_UNIX paths are limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bgrfc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


class SimRunner:
    """Starts simulator processes and always kills them (by PID) afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.binary = fcsim_binary(tmp)
        self.run_dir = tmp / "run"
        self.procs: list[subprocess.Popen] = []
        self.tokens: set[str] = set()
        # A few-KB bzImage with an embedded config: what the simulator's loader checks.
        self.kernel = synthetic_kernel(tmp / "vmlinux")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"BANGER_FCSIM_RUN_DIR": str(self.run_dir), **(extra or {})}

    def spawn(
        self,
        *args: str,
        netns: str | None = None,
        env: dict[str, str] | None = None,
        console: Path | None = None,
    ) -> subprocess.Popen:
        argv = [self.binary, *args]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        out = open(console or (self.tmp / "console.log"), "ab")  # noqa: SIM115
        try:
            proc = system.spawn(argv, stdout=out, stderr=out, env=self.env(env))
        finally:
            out.close()
        self.procs.append(proc)
        return proc

    def start(
        self, sock: Path | None = None, *extra: str, vm_id: str = "test-vm", **kw: object
    ) -> tuple[subprocess.Popen, Path]:
        sock = sock or (self.tmp / "fc.sock")
        proc = self.spawn("--api-sock", str(sock), "--id", vm_id, *extra, **kw)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while not (sock.exists() and _answers(sock)):
            if proc.poll() is not None:
                raise AssertionError(f"simulator exited {proc.returncode}: {self.console()}")
            if time.monotonic() > deadline:
                raise AssertionError("simulator socket never appeared")
            time.sleep(0.01)
        return proc, sock

    def note_tokens(self) -> set[str]:
        """Remember the state tokens of our running simulators (for leftover checks)."""
        self.tokens |= state_tokens(self.run_dir)
        return self.tokens

    def leftovers(self) -> list[str]:
        """What our simulators left on the host (ignores other simulators)."""
        self.note_tokens()
        return host_leftovers(str(self.tmp), self.tokens)

    def console(self) -> str:
        with contextlib.suppress(OSError):
            return (self.tmp / "console.log").read_text(errors="replace")
        return ""

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        # Watchdogs finish their cleanup shortly after their simulator died.
        deadline = time.monotonic() + 15
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture
def sim(fc_tmp: Path) -> Iterator[SimRunner]:
    """Run simulators; kill them afterwards and assert nothing they made is left."""
    runner = SimRunner(fc_tmp)
    try:
        yield runner
    finally:
        runner.close()
    left = runner.leftovers()
    assert not left, f"simulator leftovers: {left}"


class NetnsHost:
    """A ``bgr-test-*`` namespace acting as the host: br0 172.30.0.1/24 + TAPs."""

    def __init__(self) -> None:
        self.name = f"bgr-test-{secrets.token_hex(3)}"
        system.run(["ip", "netns", "add", self.name], timeout=15)
        self.ip("link", "set", "lo", "up")
        self.ip("link", "add", "br0", "type", "bridge")
        self.ip("addr", "add", "172.30.0.1/24", "dev", "br0")
        self.ip("link", "set", "br0", "up")

    def ip(self, *args: str) -> str:
        return system.run(["ip", "-n", self.name, *args], timeout=15).stdout

    def exec(self, *argv: str, check: bool = True, timeout: float = 30) -> system.Result:
        return system.run(["ip", "netns", "exec", self.name, *argv], check=check, timeout=timeout)

    def add_tap(self, name: str = "tap0") -> str:
        self.ip("tuntap", "add", "dev", name, "mode", "tap")
        self.ip("link", "set", name, "master", "br0")
        self.ip("link", "set", name, "up")
        return name

    def close(self) -> None:
        res = system.run(["ip", "netns", "pids", self.name], check=False, timeout=15)
        for word in res.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(word), signal.SIGKILL)
                wait_for_exit(int(word), 5)
        system.run(["ip", "netns", "del", self.name], check=False, timeout=15)


@pytest.fixture
def test_netns() -> Iterator[NetnsHost]:
    """A throwaway network namespace with a bridge; always deleted."""
    ns = NetnsHost()
    try:
        yield ns
    finally:
        ns.close()
