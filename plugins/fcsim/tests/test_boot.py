"""Guest boot plumbing with a tiny root file system (no Debian image needed).

Every test runs the simulator inside a ``bgr-test-*`` namespace that plays the
host (bridge ``br0`` 172.30.0.1/24 + ``tap0``) and asserts, through the
``sim`` fixture, that no namespace, veth, loop device or process is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from banger_core import system
from banger_core.firecracker import FirecrackerClient
from banger_core.firecracker.launcher import wait_for_exit
from banger_fcsim.state import StateFile
from pytest_banger import wait_until
from pytest_banger.fcsim import raw_request, tiny_rootfs

from .conftest import NetnsHost, SimRunner

pytestmark = pytest.mark.net

BOOT_ARGS = (
    "console=ttyS0 reboot=k panic=1 ip=172.30.0.2::172.30.0.1:255.255.255.0:tinyhost:eth0:off"
)


def boot_tiny(
    sim: SimRunner, ns: NetnsHost, env: dict[str, str] | None = None, vsock: bool = True
) -> tuple[object, Path, FirecrackerClient]:
    img = tiny_rootfs(sim.tmp)
    data = sim.tmp / "data.img"
    data.write_bytes(b"\0" * 65536)
    tap = ns.add_tap("tap0")
    proc, sock = sim.start(None, netns=ns.name, env=env)
    client = FirecrackerClient(sock)
    client.put_machine_config(2, 256)
    client.put_boot_source(sim.kernel, BOOT_ARGS)
    client.put_drive("rootfs", img, True, True)
    client.put_drive("data", data, False, False)
    client.put_network_interface("net1", tap, "06:00:AC:10:00:02")
    if vsock:
        client.put_vsock(3, sim.tmp / "v.sock")
    client.instance_start()
    wait_until(lambda: "tiny-boot: ready" in sim.console(), what="guest boot", interval=0.02)
    sim.note_tokens()
    return proc, sock, client


def tcp_probe(ns: NetnsHost, addr: str, port: int) -> str:
    """Connect from the host namespace; a closed port in a live guest answers RST."""
    code = (
        "import socket\ns=socket.socket()\ns.settimeout(3)\n"
        f"try:\n s.connect(({addr!r},{port}))\n print('open')\n"
        "except ConnectionRefusedError:\n print('refused')\n"
        "except OSError as e:\n print('error', e)\n"
    )
    return ns.exec(sys.executable, "-c", code).stdout.strip()


def test_boot_console_network_and_ctrl_alt_del(sim: SimRunner, test_netns: NetnsHost) -> None:
    proc, _sock, client = boot_tiny(sim, test_netns)
    console = sim.console()
    assert "tiny-boot: pid 1" in console
    assert f"tiny-boot: cmdline {BOOT_ARGS} root=/dev/vda ro" in console
    assert "tiny-boot: hostname tinyhost" in console
    devices = console.split("tiny-boot: devices ", 1)[1].split("\n", 1)[0].split()
    assert {"vda", "vdb", "console", "null", "urandom", "ptmx", "pts", "banger-vsock"} <= set(
        devices
    )
    assert "vdc" not in devices
    assert "tiny-boot: vsockdir /dev/banger-vsock simulated=1" in console
    # bridge -> tap -> pump -> veth -> eth0 and back: the guest kernel answers with RST.
    assert tcp_probe(test_netns, "172.30.0.2", 9) == "refused"
    assert client.get_instance_info().state == "Running"
    client.close()
    os.kill(proc.pid, 0)
    with FirecrackerClient(_sock) as c:
        c.send_ctrl_alt_del()
    assert proc.wait(timeout=15) == 0
    console = sim.console()
    assert "tiny-boot: SIGINT, halting" in console
    assert "Vmm is stopping." in console
    assert "Firecracker exiting successfully. exit_code=0" in console


def test_guest_boot_clock_starts_at_instance_start(test_netns: NetnsHost, sim: SimRunner) -> None:
    """Issue 16 item 6: the guest has its own boot clock (a time namespace).

    Its /proc/uptime counts from InstanceStart, not from the host's boot: it
    is at most the time since just before InstanceStart (plus the sub-second
    part the whole-second offsets leave), whatever the host's uptime.
    """
    with open("/proc/uptime") as fh:
        host_uptime = float(fh.read().split()[0])
    before = time.monotonic()
    _proc, _sock, client = boot_tiny(sim, test_netns)
    elapsed = time.monotonic() - before
    line = sim.console().split("tiny-boot: uptime ", 1)[1].split("\n", 1)[0]
    guest_uptime = float(line.split()[0])
    assert 0 <= guest_uptime <= elapsed + 1.0, (guest_uptime, elapsed, host_uptime)
    if host_uptime > elapsed + 2.0:
        assert guest_uptime < host_uptime  # the host's clock would have said more
    client.close()


def test_post_boot_rules(sim: SimRunner, test_netns: NetnsHost) -> None:
    proc, sock, client = boot_tiny(sim, test_netns, vsock=False)

    def fault(method: str, path: str, body: dict) -> tuple[int, str]:
        status, _, resp = raw_request(sock, method, path, json.dumps(body))
        return status, json.loads(resp)["fault_message"] if resp else ""

    after = "The requested operation is not supported after starting the microVM."
    assert fault("PUT", "/actions", {"action_type": "InstanceStart"}) == (400, after)
    assert fault("PUT", "/boot-source", {"kernel_image_path": str(sim.kernel)}) == (400, after)
    assert fault("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}) == (400, after)
    assert fault("PATCH", "/machine-config", {"vcpu_count": 1}) == (400, after)
    assert fault("PUT", "/logger", {"level": "Info"}) == (400, after)
    assert fault("PUT", "/vsock", {"guest_cid": 3, "uds_path": "/tmp/x"}) == (400, after)
    status, msg = fault(
        "PUT",
        "/drives/x",
        {"drive_id": "x", "path_on_host": str(sim.kernel), "is_root_device": False},
    )
    assert status == 400 and "PCI is not enabled" in msg
    assert raw_request(sock, "PATCH", "/drives/data", '{"drive_id":"data"}')[0] == 204
    assert raw_request(sock, "PATCH", "/network-interfaces/net1", '{"iface_id":"net1"}')[0] == 204
    assert raw_request(sock, "PUT", "/actions", '{"action_type":"FlushMetrics"}')[0] == 204
    assert raw_request(sock, "GET", "/machine-config")[0] == 200
    client.pause()
    assert client.get_instance_info().state == "Paused"
    client.pause()  # idempotent
    client.resume()
    assert client.get_instance_info().state == "Running"
    assert tcp_probe(test_netns, "172.30.0.2", 9) == "refused"
    client.send_ctrl_alt_del()
    assert proc.wait(timeout=15) == 0


def _vsock_dir(sim: SimRunner) -> Path:
    states = list((sim.run_dir).glob("*.json"))
    assert len(states) == 1
    st = StateFile.load(states[0])
    assert st is not None
    return sim.run_dir / st.data["token"] / "vsock"


def _connect(path: Path, line: bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(path))
    s.sendall(line)
    return s


def _readline(s: socket.socket) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        out += b
    return out


def test_vsock_host_and_guest_initiated(sim: SimRunner, test_netns: NetnsHost) -> None:
    proc, _sock, client = boot_tiny(sim, test_netns)
    vdir = _vsock_dir(sim)
    # A fake guest agent listening on vsock port 1024.
    agent = socket.socket(socket.AF_UNIX)
    agent.bind(str(vdir / "1024.sock"))
    agent.listen(4)
    uds = sim.tmp / "v.sock"

    s = _connect(uds, b"CONNECT 1024\n")
    conn, _ = agent.accept()
    assert _readline(s) == b"OK 1073741824\n"
    s.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    conn.sendall(b"pong")
    assert s.recv(4) == b"pong"
    s.close()
    conn.close()

    s = _connect(uds, b"connect 1024\n")  # case-insensitive
    conn, _ = agent.accept()
    assert _readline(s) == b"OK 1073741825\n"
    s.close()
    conn.close()

    s = _connect(uds, b"CONNECT 77\n")  # nobody listens: closed without OK
    assert s.recv(16) == b""
    s.close()

    # Guest-initiated: host listens on <uds_path>_5000.
    host = socket.socket(socket.AF_UNIX)
    host.bind(f"{uds}_5000")
    host.listen(1)
    g = _connect(vdir / "host.sock", b"5000\nhello")
    hc, _ = host.accept()
    hc.settimeout(5)
    assert hc.recv(5) == b"hello"
    hc.sendall(b"back")
    assert g.recv(4) == b"back"
    for x in (g, hc, host, agent):
        x.close()
    client.send_ctrl_alt_del()
    assert proc.wait(timeout=15) == 0


def test_ignore_ctrl_alt_del_then_sigkill_watchdog(sim: SimRunner, test_netns: NetnsHost) -> None:
    proc, _sock, client = boot_tiny(sim, test_netns, env={"BANGER_FCSIM_IGNORE_CTRL_ALT_DEL": "1"})
    client.send_ctrl_alt_del()
    # The simulator handles the action before it answers: the guest has been
    # asked and has ignored it by now (no sleep standing in for "nothing happened").
    assert "Guest ignores Ctrl-Alt-Del" in sim.console()
    assert proc.poll() is None
    assert sim.leftovers()  # the guest is still there
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=5) == -signal.SIGKILL
    wait_until(lambda: not sim.leftovers(), timeout=20, what="watchdog cleanup")
    assert not list(sim.run_dir.glob("*.json"))


def test_sigterm_with_guest_cleans_up(sim: SimRunner, test_netns: NetnsHost) -> None:
    proc, _sock, _client = boot_tiny(sim, test_netns)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=15) == -signal.SIGTERM
    assert not sim.leftovers()
    assert "Firecracker exiting successfully" not in sim.console()


def test_no_root_drive_panics_and_exits_zero(sim: SimRunner, test_netns: NetnsHost) -> None:
    proc, sock = sim.start(None, netns=test_netns.name)
    with FirecrackerClient(sock) as client:
        client.put_boot_source(sim.kernel, "console=ttyS0 reboot=k panic=1")
        client.instance_start()
    assert proc.wait(timeout=15) == 0
    assert "Kernel panic" in sim.console()


def test_boot_delay_knob(sim: SimRunner, test_netns: NetnsHost) -> None:
    started = time.monotonic()
    proc, _sock, client = boot_tiny(sim, test_netns, env={"BANGER_FCSIM_BOOT_DELAY": "1.0"})
    assert time.monotonic() - started >= 1.0
    client.send_ctrl_alt_del()
    assert proc.wait(timeout=15) == 0


def test_cleanup_command_after_watchdog_lost(sim: SimRunner, test_netns: NetnsHost) -> None:
    proc, _sock, _client = boot_tiny(sim, test_netns)
    state_files = list(sim.run_dir.glob("*.json"))
    # Kill the watchdog first, then the simulator: leftovers stay recorded.
    marker = str(state_files[0])
    watchdogs: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"--watchdog" in cmd and marker.encode() in cmd:
                os.kill(int(entry), signal.SIGKILL)
                watchdogs.append(int(entry))
    assert watchdogs, "no watchdog found for the simulator"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    # Both are gone (not merely signalled): nobody is left to clean up.
    assert all(wait_for_exit(pid, 5) for pid in watchdogs)
    assert state_files[0].exists()
    res = system.run(
        ["ip", "netns", "exec", test_netns.name, sim.binary, "--cleanup", "--all"],
        env=sim.env(),
        check=False,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "removed leftovers of test-vm" in res.stdout
    assert not list(sim.run_dir.glob("*.json"))


def test_getting_started_replay_raw(sim: SimRunner, test_netns: NetnsHost) -> None:
    """docs/getting-started.md, request by request, with a raw socket client."""
    img = tiny_rootfs(sim.tmp)
    test_netns.add_tap("tap0")
    test_netns.add_tap("tap1")
    proc, sock = sim.start(None, netns=test_netns.name)
    logfile = sim.tmp / "firecracker.log"
    reqs = [
        (
            "/logger",
            {
                "log_path": str(logfile),
                "level": "Debug",
                "show_level": True,
                "show_log_origin": True,
            },
        ),
        (
            "/boot-source",
            {"kernel_image_path": str(sim.kernel), "boot_args": "console=ttyS0 reboot=k panic=1"},
        ),
        (
            "/drives/rootfs",
            {
                "drive_id": "rootfs",
                "path_on_host": str(img),
                "is_root_device": True,
                "is_read_only": False,
            },
        ),
        (
            "/network-interfaces/net1",
            {"iface_id": "net1", "guest_mac": "06:00:AC:10:00:02", "host_dev_name": "tap0"},
        ),
    ]
    for path, body in reqs:
        status, head, resp = raw_request(sock, "PUT", path, json.dumps(body, indent=8))
        assert (status, resp) == (204, b""), resp
        assert head == b"HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"
    # A second interface with the same MAC is refused; the TAP in use is refused too.
    status, _, resp = raw_request(
        sock,
        "PUT",
        "/network-interfaces/net2",
        json.dumps({"iface_id": "net2", "guest_mac": "06:00:ac:10:00:02", "host_dev_name": "tap1"}),
    )
    assert status == 400
    assert json.loads(resp)["fault_message"] == (
        "Network config error: The MAC address is already in use: 06:00:ac:10:00:02"
    )
    status, _, resp = raw_request(
        sock,
        "PUT",
        "/network-interfaces/net2",
        json.dumps({"iface_id": "net2", "host_dev_name": "tap0"}),
    )
    assert status == 400 and "Resource busy (os error 16)" in json.loads(resp)["fault_message"]
    time.sleep(0.015)
    status, _, _ = raw_request(sock, "PUT", "/actions", '{\n "action_type": "InstanceStart"\n}')
    assert status == 204
    wait_until(lambda: "tiny-boot: ready" in sim.console(), what="guest boot", interval=0.02)
    sim.note_tokens()
    assert "tiny-boot: cmdline console=ttyS0 reboot=k panic=1 root=/dev/vda rw" in sim.console()
    assert raw_request(sock, "PUT", "/actions", '{"action_type": "SendCtrlAltDel"}')[0] == 204
    assert proc.wait(timeout=15) == 0
    assert 'Put request on "/actions"' in logfile.read_text()


def test_config_file_no_api_boots(sim: SimRunner, test_netns: NetnsHost) -> None:
    img = tiny_rootfs(sim.tmp)
    cfg = sim.tmp / "vm.json"
    cfg.write_text(
        json.dumps(
            {
                "boot-source": {"kernel_image_path": str(sim.kernel), "boot_args": BOOT_ARGS},
                "drives": [
                    {
                        "drive_id": "rootfs",
                        "path_on_host": str(img),
                        "is_root_device": True,
                        "is_read_only": True,
                    }
                ],
                "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
            }
        )
    )
    proc = sim.spawn("--no-api", "--config-file", str(cfg), "--id", "cfgvm", netns=test_netns.name)
    wait_until(lambda: "tiny-boot: ready" in sim.console(), what="guest boot", interval=0.02)
    sim.note_tokens()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=15) == -signal.SIGTERM
    bad = sim.tmp / "bad.json"
    bad.write_text(json.dumps({"boot-source": {"kernel_image_path": "/nonexistent"}, "drives": []}))
    proc = sim.spawn("--no-api", "--config-file", str(bad), netns=test_netns.name)
    assert proc.wait(timeout=15) == 1
    assert "The kernel file cannot be opened" in sim.console()
