"""FirecrackerClient and the launcher, against banger-fcsim (API only, no guest)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger_core.errors import BangerError, ConflictError, ValidationError
from banger_core.firecracker import (
    FirecrackerAPIError,
    FirecrackerClient,
    FirecrackerConnectionError,
    VMMProcess,
    VMMStartError,
    find_vmm_pid,
    launch_vmm,
    valid_resource_id,
    valid_vm_id,
    wait_for_exit,
)
from pytest_banger.fcsim import fcsim_binary


@pytest.fixture
def tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bgrfcc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vmms() -> Iterator[list[VMMProcess]]:
    started: list[VMMProcess] = []
    yield started
    for vmm in started:
        vmm.kill(signal.SIGKILL)
        vmm.wait(5)


def launch(tmp: Path, vmms: list[VMMProcess], name: str = "vm-a", **kw: object) -> VMMProcess:
    vmm = launch_vmm(
        fcsim_binary(tmp),
        tmp / f"{name}.sock",
        name,
        log_path=tmp / f"{name}.log",
        console_path=tmp / f"{name}.console",
        extra_env={"BANGER_FCSIM_RUN_DIR": str(tmp / "run")},
        **kw,  # type: ignore[arg-type]
    )
    vmms.append(vmm)
    return vmm


def test_launch_and_typed_calls(tmp: Path, vmms: list[VMMProcess]) -> None:
    started = time.monotonic()
    vmm = launch(tmp, vmms)
    assert time.monotonic() - started < 3
    assert vmm.is_alive()
    assert find_vmm_pid(vmm.api_sock) == vmm.pid
    kernel = tmp / "vmlinux"
    kernel.write_text("k")
    disk = tmp / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    with FirecrackerClient(vmm.api_sock) as c:
        info = c.get_instance_info()
        assert (info.id, info.state, info.app_name) == ("vm-a", "Not started", "Firecracker")
        assert c.get_version() == "1.16.1"
        c.put_logger(tmp / "vm-a.log", "Debug", True, False)
        c.put_metrics(tmp / "metrics.json")
        c.put_machine_config(2, 256, smt=False)
        assert c.get_machine_config()["mem_size_mib"] == 256
        c.put_boot_source(kernel, "console=ttyS0")
        c.put_drive("rootfs", disk, True, False)
        c.put_vsock(3, tmp / "v.sock")
        with pytest.raises(FirecrackerAPIError) as err:
            c.send_ctrl_alt_del()
        assert err.value.status == 400
        assert str(err.value) == (
            "The requested operation is not supported before starting the microVM."
        )
        with pytest.raises(FirecrackerAPIError, match="A root block device already exists!"):
            c.put_drive("other", disk, True, False)
        with pytest.raises(FirecrackerAPIError, match="Reinitialization of metrics"):
            c.put_metrics(tmp / "metrics.json")
        with pytest.raises(FirecrackerAPIError, match="Open tap device failed"):
            c.put_network_interface("net1", "bgrnotap0")
        cfg = c.get_vm_config()
        assert cfg["drives"][0]["path_on_host"] == str(disk)
    assert isinstance(FirecrackerAPIError(400, "x"), BangerError)


def test_client_reconnects_after_server_closed(tmp: Path, vmms: list[VMMProcess]) -> None:
    vmm = launch(tmp, vmms)
    c = FirecrackerClient(vmm.api_sock)
    assert c.get_version() == "1.16.1"
    # Break the kept-alive connection underneath the client.
    assert c._sock is not None
    c._sock.shutdown(socket.SHUT_RDWR)
    assert c.get_version() == "1.16.1"
    c.close()


def test_client_errors_when_nothing_listens(tmp: Path) -> None:
    with pytest.raises(FirecrackerConnectionError, match="cannot connect"):
        FirecrackerClient(tmp / "none.sock", timeout=0.5).get_version()
    assert FirecrackerClient(tmp / "none.sock").ping(0.2) is False


def test_client_timeout(tmp: Path) -> None:
    path = tmp / "silent.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)
    try:
        with pytest.raises(FirecrackerConnectionError, match="did not answer"):
            FirecrackerClient(path, timeout=0.3).get_version()
    finally:
        srv.close()


def test_refuses_when_a_vmm_answers(tmp: Path, vmms: list[VMMProcess]) -> None:
    vmm = launch(tmp, vmms)
    with pytest.raises(ConflictError, match=str(vmm.api_sock)):
        launch(tmp, vmms)


def test_removes_stale_socket(tmp: Path, vmms: list[VMMProcess]) -> None:
    stale = tmp / "vm-a.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # bound, never listening: a stale file
    vmm = launch(tmp, vmms)
    assert vmm.is_alive()


def test_launch_failure_reports_console_tail(tmp: Path, vmms: list[VMMProcess]) -> None:
    with pytest.raises(VMMStartError) as err:
        launch(tmp, vmms, extra_args=["--bogus-flag"])
    assert "exited with status 153" in str(err.value)
    assert "Arguments parsing error" in str(err.value)


def test_invalid_vm_id(tmp: Path, vmms: list[VMMProcess]) -> None:
    with pytest.raises(ValidationError):
        launch(tmp, vmms, name="bad_id")
    assert valid_vm_id("a-b-1") and not valid_vm_id("a_b") and not valid_vm_id("x" * 65)
    assert valid_resource_id("root_fs") and not valid_resource_id("root-fs")


def test_wait_for_exit_and_kill(tmp: Path, vmms: list[VMMProcess]) -> None:
    vmm = launch(tmp, vmms)
    # Treat it like a PID from the store (not our child handle).
    other = VMMProcess(vmm.pid, vmm.api_sock)
    assert other.is_alive()
    assert wait_for_exit(vmm.pid, 0.2) is False
    threading.Timer(0.2, lambda: os.kill(vmm.pid, signal.SIGTERM)).start()
    assert wait_for_exit(vmm.pid, 5) is True  # zombie until reaped: counts as gone
    assert vmm.wait(5)
    assert vmm.returncode == -signal.SIGTERM
    assert find_vmm_pid(vmm.api_sock) is None
    assert vmm.api_sock.exists()  # Firecracker leaves its socket behind
