"""banger-fcqemu as a process, with a scripted stand-in for qemu-system-x86_64 (no QEMU).

The stand-in serves QMP on the socket the command line names, records its
argv, and "reboots" (exits 0) on Ctrl-Alt-Del, as QEMU with ``-no-reboot``
does when a ``reboot=k`` guest handles it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_core import system
from banger_core.firecracker.launcher import pid_alive, wait_for_exit
from pytest_banger.fcsim import raw_request
from pytest_banger.kernels import synthetic_kernel
from pytest_banger.simhost import console_script

FAKE_QEMU = """#!{python}
import json, os, socket, sys
argv = sys.argv[1:]
open(os.environ["FAKE_QEMU_ARGV"], "w").write(json.dumps(argv))
if os.environ.get("FAKE_QEMU_FAIL"):
    sys.stderr.write("qemu-system-x86_64: -kernel: could not load kernel\\n")
    sys.exit(1)
spec = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev" and "id=qmp" in argv[i + 1]][0]
name = dict(p.split("=", 1) for p in spec.split(",")[1:])["path"]
listener = socket.socket(socket.AF_UNIX)
listener.bind("\\0" + name)
listener.listen(1)
print("fake guest: booted", flush=True)
conn, _ = listener.accept()
f = conn.makefile("rwb")
f.write(b'{{"QMP": {{"version": {{}}, "capabilities": []}}}}\\n'); f.flush()
for line in f:
    cmd = json.loads(line)
    with open(os.environ["FAKE_QEMU_ARGV"] + ".qmp", "a") as log:
        log.write(json.dumps(cmd) + "\\n")
    f.write(b'{{"return": {{}}}}\\n'); f.flush()
    if cmd["execute"] == "send-key":
        print("fake guest: ctrl-alt-del, rebooting", flush=True)
        sys.exit(0)
"""


def _answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


class FcQemu:
    """Starts banger-fcqemu processes against the stand-in and always kills them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fake = tmp / "fake-qemu"
        self.fake.write_text(FAKE_QEMU.format(python=sys.executable))
        self.fake.chmod(0o755)
        self.argv_file = tmp / "qemu-argv.json"
        # An ELF vmlinux with the PVH note: what Firecracker v1.16.1 loads and QEMU boots.
        self.kernel = synthetic_kernel(tmp / "vmlinux")
        self.procs: list = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> tuple[object, Path]:
        sock = self.tmp / f"api{len(self.procs)}.sock"
        out = open(self.tmp / f"out{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = system.spawn(
            [console_script("banger-fcqemu"), "--api-sock", str(sock), "--id", "qemu-1", *args],
            stdout=out,
            stderr=out,
            env={
                "BANGER_FCQEMU_QEMU": str(self.fake),
                "FAKE_QEMU_ARGV": str(self.argv_file),
                "BANGER_FCQEMU_ACCEL": "tcg",
                **(env or {}),
            },
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 15
        while not _answers(sock):  # the socket file exists at bind(), it answers at listen()
            assert proc.poll() is None, self.output(len(self.procs) - 1)
            assert time.monotonic() < deadline, "no API socket"
            time.sleep(0.01)
        return proc, sock

    def qmp_commands(self) -> list[str]:
        text = Path(str(self.argv_file) + ".qmp").read_text()
        return [json.loads(line)["execute"] for line in text.splitlines()]

    def output(self, index: int = 0) -> str:
        return (self.tmp / f"out{index}.log").read_text(errors="replace")

    def configure_and_boot(self, sock: Path) -> tuple[int, bytes]:
        for path, body in (
            ("/machine-config", {"vcpu_count": 2, "mem_size_mib": 256}),
            ("/boot-source", {"kernel_image_path": str(self.kernel), "boot_args": "console=ttyS0"}),
        ):
            status, _, resp = raw_request(sock, "PUT", path, json.dumps(body))
            assert status == 204, resp
        status, _, body = raw_request(
            sock, "PUT", "/actions", json.dumps({"action_type": "InstanceStart"})
        )
        return status, body

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def fcq() -> Iterator[FcQemu]:
    tmp = Path(tempfile.mkdtemp(prefix="bgrfq-", dir="/tmp"))
    runner = FcQemu(tmp)
    yield runner
    runner.close()
    shutil.rmtree(tmp, ignore_errors=True)


def test_version_help_and_no_simulator_modes() -> None:
    exe = console_script("banger-fcqemu")
    assert system.run([exe, "--version"]).stdout == "Firecracker v1.16.1\n"
    assert "banger-fcqemu [--api-sock PATH]" in system.run([exe, "--help"]).stdout
    result = system.run([exe, "--cleanup", "--all"], check=False)
    assert result.returncode == 153 and "'cleanup'" in result.stdout


def test_boot_then_ctrl_alt_del_exits_zero(fcq: FcQemu) -> None:
    proc, sock = fcq.start()
    status, body = fcq.configure_and_boot(sock)
    assert status == 204, body
    status, _, body = raw_request(sock, "GET", "/")
    assert json.loads(body)["state"] == "Running"
    argv = json.loads(fcq.argv_file.read_text())
    assert argv[argv.index("-smp") + 1] == "2" and argv[argv.index("-m") + 1] == "256M"
    status, _, _ = raw_request(sock, "PUT", "/actions", '{"action_type": "SendCtrlAltDel"}')
    assert status == 204
    assert proc.wait(15) == 0
    out = fcq.output()
    assert "QEMU command line: " in out and "fake guest: booted" in out
    assert "Firecracker exiting successfully. exit_code=0" in out
    assert fcq.qmp_commands() == ["qmp_capabilities", "send-key"]


def test_pause_and_resume_go_to_qmp(fcq: FcQemu) -> None:
    _proc, sock = fcq.start()
    assert fcq.configure_and_boot(sock)[0] == 204
    for state in ("Paused", "Resumed"):
        status, _, _ = raw_request(sock, "PATCH", "/vm", json.dumps({"state": state}))
        assert status == 204
    assert fcq.qmp_commands() == ["qmp_capabilities", "stop", "cont"]


def test_qemu_failing_to_start_fails_instance_start(fcq: FcQemu) -> None:
    proc, sock = fcq.start(env={"FAKE_QEMU_FAIL": "1"})
    status, body = fcq.configure_and_boot(sock)
    assert status == 400
    assert json.loads(body)["fault_message"].startswith(
        "Start microvm error: QEMU did not start (exit status 1)"
    )
    assert "could not load kernel" in fcq.output()
    assert proc.poll() is None  # the VMM stays up, like Firecracker after a failed start


def _child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_qemu_never_outlives_the_vmm(fcq: FcQemu, sig: int) -> None:
    proc, sock = fcq.start()
    assert fcq.configure_and_boot(sock)[0] == 204
    children = _child_pids(proc.pid)
    assert len(children) == 1 and pid_alive(children[0])
    os.kill(proc.pid, sig)
    proc.wait(10)
    assert wait_for_exit(children[0], 10), "QEMU survived its VMM"


@pytest.mark.parametrize(
    ("args", "env", "machine", "blk"),
    [
        ((), {}, "acpi=on,pcie=off", "virtio-blk-device"),
        (("--enable-pci",), {}, "acpi=on,pcie=on", "virtio-blk-pci"),
        (
            (),
            {"BANGER_FCQEMU_ACPI": "off"},
            "acpi=off,pcie=off,auto-kernel-cmdline=on",
            "virtio-blk-device",
        ),
    ],
)
def test_transport_follows_the_command_line(fcq: FcQemu, args, env, machine, blk) -> None:
    _proc, sock = fcq.start(*args, env=env)
    root = fcq.tmp / "root.ext4"
    root.write_bytes(b"\0" * 4096)
    body = {"drive_id": "rootfs", "path_on_host": str(root), "is_root_device": True}
    assert raw_request(sock, "PUT", "/drives/rootfs", json.dumps(body))[0] == 204
    assert fcq.configure_and_boot(sock)[0] == 204
    argv = json.loads(fcq.argv_file.read_text())
    assert argv[argv.index("-M") + 1].endswith(machine)
    assert f"{blk},drive=drive0" in argv
    assert argv[argv.index("-append") + 1].startswith("console=ttyS0 root=/dev/vda rw ")


def test_a_signal_to_the_process_group_ends_vmm_and_qemu(fcq: FcQemu) -> None:
    """Like `timeout` or a terminal's Ctrl-C: the whole group gets SIGTERM at once."""
    proc, sock = fcq.start()
    assert fcq.configure_and_boot(sock)[0] == 204
    children = _child_pids(proc.pid)
    assert len(children) == 1
    assert os.getpgid(children[0]) != os.getpgid(proc.pid)  # QEMU has a group of its own
    os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
    assert proc.wait(15) == -signal.SIGTERM  # dies by the signal, as Firecracker does
    assert wait_for_exit(children[0], 10), "QEMU survived its VMM"
