"""One conformance suite over every Firecracker-API back-end (``make conformance``).

The same cases run against ``banger-fcsim``, ``banger-fcqemu`` and, when
``BANGER_CONFORMANCE_FIRECRACKER`` names a real ``firecracker`` binary (a
KVM host), against Firecracker itself. The stand-ins run once per emulated
release (``BANGER_FC_EMULATE_VERSION``); a real binary runs only the cases of
the release it is. ``banger-fcqemu`` runs with a scripted stand-in for QEMU
(QMP only, no guest): these are API and loader cases; booting the real
kernel under QEMU is ``tests/realkernel``.

Expected answers are written down from upstream's source (each case cites
the file and tag), not computed by banger's own loader.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from banger_core import system
from banger_core.firecracker.transport import parse_version
from pytest_banger import wait_until
from pytest_banger.simhost import console_script

FIRECRACKER_ENV = "BANGER_CONFORMANCE_FIRECRACKER"
VERSIONS = ("1.7", "1.8", "1.13", "1.16.1", "main")
REPORTED = {
    "1.7": "1.7.0",
    "1.8": "1.8.0",
    "1.13": "1.13.0",
    "1.16.1": "1.16.1",
    "main": "1.17.0-dev",
}
"""What ``--version`` / ``GET /version`` say for each emulated release."""

FAKE_QEMU = """#!{python}
import os, socket, sys
argv = sys.argv[1:]
spec = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev" and "id=qmp" in argv[i + 1]][0]
name = dict(p.split("=", 1) for p in spec.split(",")[1:])["path"]
listener = socket.socket(socket.AF_UNIX)
listener.bind("\\0" + name)
listener.listen(1)
conn, _ = listener.accept()
f = conn.makefile("rwb")
f.write(b'{{"QMP": {{"version": {{}}, "capabilities": []}}}}\\n'); f.flush()
for line in f:
    f.write(b'{{"return": {{}}}}\\n'); f.flush()
    if b"send-key" in line:
        sys.exit(0)
"""


@dataclass
class Backend:
    """One Firecracker-API program and the release it behaves as."""

    name: str
    """``banger-fcsim``, ``banger-fcqemu`` or ``firecracker``."""
    binary: str
    version: str
    """The emulated release key (``1.16.1``, ``main``, ...)."""
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """Run the binary to completion (``--version``, bad flags)."""
        return subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **self.env},
            check=False,
        )

    def start(self, *args: str) -> Path:
        """Start it with an API socket; return the socket once it answers."""
        sock = self.tmp / f"api{len(self.procs)}.sock"
        out = open(self.tmp / f"out{len(self.procs)}.log", "ab")  # noqa: SIM115
        try:
            proc = system.spawn(
                [self.binary, "--api-sock", str(sock), "--id", f"conf-{len(self.procs)}", *args],
                stdout=out,
                stderr=out,
                env=self.env,
            )
        finally:
            out.close()
        self.procs.append(proc)
        wait_until(
            lambda: _answers(sock) or proc.poll() is not None,
            timeout=15,
            interval=0.01,
            what=f"{self.name}'s API socket",
        )
        if proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {proc.returncode}: {self.output()}")
        return sock

    def output(self) -> str:
        """Everything the processes printed (console and log)."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("out*.log")))

    def close(self) -> None:
        """SIGTERM (then SIGKILL) every process it started, by PID."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def _answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def _real_firecracker_version() -> str | None:
    binary = os.environ.get(FIRECRACKER_ENV)
    if not binary:
        return None
    res = system.run([binary, "--version"], check=False, timeout=30)
    found = parse_version(res.stdout)
    if found is None:
        return None
    text = ".".join(map(str, found))
    if "-dev" in res.stdout or found >= (1, 17, 0):
        return "main"
    for key, reported in REPORTED.items():
        if reported == text:
            return key
    return text


def _params() -> list:
    params = [pytest.param(("banger-fcsim", v), id=f"fcsim-{v}") for v in VERSIONS] + [
        pytest.param(("banger-fcqemu", v), id=f"fcqemu-{v}") for v in VERSIONS
    ]
    real = _real_firecracker_version()
    if real is not None:
        params.append(pytest.param(("firecracker", real), id=f"firecracker-{real}"))
    return params


@pytest.fixture(params=_params())
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each back-end, for each release it can be (the stand-ins: every emulated one)."""
    name, version = request.param
    if os.geteuid() != 0:
        pytest.skip("needs root (the simulated guest's namespaces)")
    tmp = Path(tempfile.mkdtemp(prefix="bgrconf-", dir="/tmp"))
    env: dict[str, str] = {}
    if name == "firecracker":
        binary = os.environ[FIRECRACKER_ENV]
    else:
        binary = console_script(name)
        env["BANGER_FC_EMULATE_VERSION"] = version
    if name == "banger-fcsim":
        env["BANGER_FCSIM_RUN_DIR"] = str(tmp / "run")
    if name == "banger-fcqemu":
        fake = tmp / "fake-qemu"
        fake.write_text(FAKE_QEMU.format(python=sys.executable))
        fake.chmod(0o755)
        env.update({"BANGER_FCQEMU_QEMU": str(fake), "BANGER_FCQEMU_ACCEL": "tcg"})
    b = Backend(name, binary, version, tmp, env)
    try:
        yield b
    finally:
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)
