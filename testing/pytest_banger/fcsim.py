"""Helpers for testing against the simulator (used by banger's own tests).

* :func:`fcsim_binary` returns an executable that runs ``banger-fcsim``: the
  installed console script when there is one, else a small wrapper script.
* :func:`raw_request` speaks HTTP/1.1 over AF_UNIX byte by byte, independent
  of :class:`~banger_core.firecracker.client.FirecrackerClient`.
* :func:`tiny_rootfs` builds a minimal ext4 root (host ``sh`` and a few tools
  with their libraries) whose ``/usr/lib/banger/banger-boot`` is a shell
  script, for plumbing tests that need no real Debian image.
* :func:`host_leftovers` lists simulator leftovers (namespaces, veths, loop
  devices, processes) so tests can assert nothing leaked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import banger_core
import banger_fcsim
import banger_vmmkit
from banger_core import system


def state_tokens(run_dir: Path) -> set[str]:
    """Tokens of the simulators that currently have a state file in ``run_dir``."""
    with contextlib.suppress(OSError):
        return {p.stem for p in Path(run_dir).glob("*.json")}
    return set()


def fcsim_binary(directory: Path) -> str:
    """Path of an executable running the simulator (wrapper written into ``directory``)."""
    installed = Path(sys.executable).parent / "banger-fcsim"
    if installed.exists():
        return str(installed)
    pkg_root = os.pathsep.join(
        str(Path(str(pkg.__file__)).resolve().parent.parent)
        for pkg in (banger_core, banger_vmmkit, banger_fcsim)
    )
    wrapper = Path(directory) / "banger-fcsim"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{pkg_root}${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec "{sys.executable}" -m banger_fcsim "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def raw_exchange(sock_path: str | Path, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection and return one complete response."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(data)
        return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    """Read one HTTP response (headers + Content-Length body) from ``sock``."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    match = re.search(rb"Content-Length: (\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def raw_request(
    sock_path: str | Path, method: str, path: str, body: str | bytes | None = None
) -> tuple[int, bytes, bytes]:
    """One request like ``curl --unix-socket``; returns (status, raw head, body)."""
    data = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n"
    payload = b""
    if body is not None:
        payload = body.encode() if isinstance(body, str) else body
        data += f"Content-Length: {len(payload)}\r\n"
        data += "Content-Type: application/x-www-form-urlencoded\r\n"
    raw = raw_exchange(sock_path, data.encode() + b"\r\n" + payload)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, head + b"\r\n\r\n", rest


TINY_TOOLS = ["sh", "sleep", "cat", "ls", "hostname", "mount", "echo", "mkdir"]

DEFAULT_BOOT_SCRIPT = """#!/bin/sh
echo "tiny-boot: pid $$"
echo "tiny-boot: cmdline $(cat /proc/cmdline)"
echo "tiny-boot: hostname $(hostname)"
echo "tiny-boot: devices $(ls /dev | tr '\\n' ' ')"
echo "tiny-boot: vsockdir $BANGER_VSOCK_DIR simulated=$BANGER_GUEST_SIMULATED"
echo "tiny-boot: uptime $(cat /proc/uptime)"
trap 'echo "tiny-boot: SIGINT, halting"; exit 0' INT
echo "tiny-boot: ready"
while :; do sleep 0.1; done
"""


def _libs(binary: str) -> list[str]:
    res = system.run(["ldd", binary], check=False, timeout=30)
    out = []
    for line in res.stdout.splitlines():
        match = re.search(r"(/\S+)", line)
        if match and os.path.exists(match.group(1)):
            out.append(match.group(1))
    return out


def tiny_rootfs(directory: Path, boot_script: str = DEFAULT_BOOT_SCRIPT, size_mb: int = 32) -> Path:
    """Build ``directory/tiny.ext4`` from host binaries; return its path."""
    directory = Path(directory)
    tree = directory / "tiny-root"
    if tree.exists():
        shutil.rmtree(tree)
    for d in ("bin", "dev", "proc", "sys", "run", "tmp", "root", "etc", "usr/lib/banger"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    tools = TINY_TOOLS + ["tr"]
    for tool in tools:
        path = system.which(tool)
        if path is None:
            continue
        real = os.path.realpath(path)
        shutil.copy2(real, tree / "bin" / tool)
        for lib in _libs(real):
            dest = tree / lib.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                shutil.copy2(os.path.realpath(lib), dest)
    boot = tree / "usr/lib/banger/banger-boot"
    boot.write_text(boot_script)
    boot.chmod(0o755 | stat.S_IFREG)
    (tree / "etc/hostname").write_text("tiny\n")
    image = directory / "tiny.ext4"
    with contextlib.suppress(FileNotFoundError):
        image.unlink()
    system.run(["truncate", "-s", f"{size_mb}M", str(image)], timeout=30)
    system.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image)], timeout=60)
    shutil.rmtree(tree)
    return image


def host_leftovers(marker: str | None = None, tokens: set[str] | None = None) -> list[str]:
    """Simulator leftovers on this host: namespaces, veths, loop devices, processes.

    ``marker`` restricts loop devices and processes to those whose backing
    file / command line contains it (e.g. a test's temporary directory);
    ``tokens`` (simulator state tokens, see :func:`state_tokens`) restricts
    namespaces and veths. Other simulators running on the machine are ignored.
    """
    found: list[str] = []

    def mine(name: str, prefix: str) -> bool:
        if not name.startswith(prefix):
            return False
        if marker is None and tokens is None:
            return True
        return any(name[len(prefix) :].startswith(t) for t in tokens or ())

    with contextlib.suppress(OSError):
        for name in os.listdir("/run/netns"):
            if mine(name, "bgr-fcsim-"):
                found.append(f"netns {name}")
    for name in os.listdir("/sys/class/net"):
        if mine(name, "bgrfc"):
            found.append(f"veth {name}")
    for entry in Path("/sys/block").glob("loop*"):
        with contextlib.suppress(OSError):
            backing = (entry / "loop" / "backing_file").read_text().strip()
            if marker is None or marker in backing:
                found.append(f"loop /dev/{entry.name} -> {backing}")
    me = os.getpid()
    for pid_dir in os.listdir("/proc"):
        if not pid_dir.isdigit() or int(pid_dir) == me:
            continue
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid_dir}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            ours = "banger_fcsim" in cmd or "guestinit.py" in cmd
            if ours and (marker is None or marker in cmd):
                state = Path(f"/proc/{pid_dir}/stat").read_text().rsplit(")", 1)[-1].split()[0]
                if state != "Z":
                    found.append(f"process {pid_dir}: {cmd.strip()}")
    return found


_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with this thread in network namespace ``name`` (sockets stay there).

    Only the calling thread switches (``setns`` is per thread); it switches back
    on exit. Sockets created inside keep the namespace, so a test can hand one
    to paramiko/fabric (``connect_kwargs={"sock": s}``) and talk to a guest
    that is only reachable from a test namespace.
    """
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
        try:
            yield
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(own)
        os.close(target)


def tcp_connect_in(netns: str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP socket connected from inside ``netns``."""
    with in_netns(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def vsock_connect(uds: str | Path, port: int, timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """Connect to a hybrid-vsock Unix socket the way a host program does.

    Sends ``CONNECT <port>`` and returns the socket with the answer line
    (``b"OK <n>\\n"``, or whatever came before the VMM closed it).
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(uds))
    s.sendall(f"CONNECT {port}\n".encode())
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        line += chunk
    return s, line


def http_get_over(s: socket.socket, path: str) -> tuple[int, bytes]:
    """``GET path`` (HTTP/1.0) on a connected stream; the status and the body."""
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    words = head.split()
    if len(words) < 2 or not words[1].isdigit():
        raise ConnectionError(f"no HTTP reply to GET {path}: {data[:80]!r}")
    return int(words[1]), body


def vsock_http_get(
    uds: str | Path, port: int, path: str, timeout: float = 10.0
) -> tuple[int, bytes]:
    """``GET path`` from the guest's vsock ``port`` through the hybrid-vsock socket."""
    s, line = vsock_connect(uds, port, timeout)
    with s:
        if not line.startswith(b"OK "):
            raise ConnectionError(f"CONNECT {port} answered {line!r}")
        return http_get_over(s, path)
