"""API conformance of banger-fcsim (no guest needed): framing, errors, rules, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from banger_core import system
from pytest_banger.fcsim import raw_exchange, raw_request, read_response

from .conftest import SimRunner


def fault(body: bytes) -> str:
    return json.loads(body)["fault_message"]


def test_get_root_exact_bytes(sim: SimRunner) -> None:
    _, sock = sim.start(vm_id="vm-1")
    raw = raw_exchange(sock, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    body = b'{"id":"vm-1","state":"Not started","vmm_version":"1.16.1","app_name":"Firecracker"}'
    assert raw == (
        b"HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def test_default_id_and_version(sim: SimRunner, fc_tmp: Path) -> None:
    proc = sim.spawn("--api-sock", str(fc_tmp / "a.sock"))
    deadline = time.monotonic() + 10
    while not (fc_tmp / "a.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    status, _, body = raw_request(fc_tmp / "a.sock", "GET", "/")
    assert status == 200 and json.loads(body)["id"] == "anonymous-instance"
    status, _, body = raw_request(fc_tmp / "a.sock", "GET", "/version")
    assert body == b'{"firecracker_version":"1.16.1"}'
    assert proc.poll() is None


def test_204_and_400_framing(sim: SimRunner) -> None:
    _, sock = sim.start()
    body = json.dumps({"kernel_image_path": str(sim.kernel)}).encode()
    raw = raw_exchange(
        sock,
        b"PUT /boot-source HTTP/1.1\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body,
    )
    assert raw == b"HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n"
    raw = raw_exchange(sock, b"PUT /boot-source HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    expected = (
        b'{"fault_message":"An error occurred when deserializing the json body of a request: '
        b'missing field `kernel_image_path` at line 1 column 2."}'
    )
    assert raw == (
        b"HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(expected)).encode()
        + b"\r\n\r\n"
        + expected
    )


def test_keep_alive_many_requests_one_connection(sim: SimRunner) -> None:
    _, sock = sim.start()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock))
        for _ in range(5):
            s.sendall(b"GET /machine-config HTTP/1.1\r\n\r\n")
            assert read_response(s).startswith(b"HTTP/1.1 200 ")
        # Two pipelined requests in one write.
        s.sendall(b"GET /version HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        first = read_response(s)
        assert b"firecracker_version" in first


def test_getting_started_sequence_without_network(sim: SimRunner, fc_tmp: Path) -> None:
    """The curl calls of docs/getting-started.md (network part lives in test_boot)."""
    _, sock = sim.start()
    logfile = fc_tmp / "fc.log"
    rootfs = fc_tmp / "rootfs.ext4"
    rootfs.write_bytes(b"\0" * 4096)
    status, _, _ = raw_request(
        sock,
        "PUT",
        "/logger",
        json.dumps(
            {
                "log_path": str(logfile),
                "level": "Debug",
                "show_level": True,
                "show_log_origin": True,
            },
            indent=4,
        ),
    )
    assert status == 204
    assert logfile.exists()  # created at PUT time
    status, _, _ = raw_request(
        sock,
        "PUT",
        "/boot-source",
        '{\n        "kernel_image_path": "' + str(sim.kernel) + '",\n'
        '        "boot_args": "console=ttyS0 reboot=k panic=1"\n    }',
    )
    assert status == 204
    status, _, _ = raw_request(
        sock,
        "PUT",
        "/drives/rootfs",
        json.dumps(
            {
                "drive_id": "rootfs",
                "path_on_host": str(rootfs),
                "is_root_device": True,
                "is_read_only": False,
            }
        ),
    )
    assert status == 204
    cfg = json.loads(raw_request(sock, "GET", "/vm/config")[2])
    assert cfg["boot-source"]["boot_args"] == "console=ttyS0 reboot=k panic=1"
    assert cfg["drives"][0]["drive_id"] == "rootfs"
    assert 'Put request on "/drives/rootfs"' in logfile.read_text()
    assert ":INFO:" in logfile.read_text()


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("PUT", "/boot-source", None, "Empty PUT request."),
        ("PATCH", "/vm", None, "Empty PATCH request."),
        ("GET", "/machine-config", "{}", "GET request cannot have a body."),
        ("PATCH", "/boot-source", "{}", "Invalid request method and/or path: PATCH boot-source."),
        ("GET", "/nope/x", None, "Invalid request method and/or path: GET nope."),
        ("PUT", "/drives/", '{"drive_id":"a","is_root_device":false}', "The ID cannot be empty."),
        (
            "PUT",
            "/drives/root-fs",
            '{"drive_id":"root-fs","path_on_host":"/x","is_root_device":true}',
            "API Resource IDs can only contain alphanumeric characters and underscores.",
        ),
        (
            "PUT",
            "/network-interfaces/eth-0",
            '{"iface_id":"eth-0","host_dev_name":"t"}',
            "API Resource IDs can only contain alphanumeric characters and underscores.",
        ),
        (
            "PUT",
            "/drives/a",
            '{"drive_id":"b","path_on_host":"/x","is_root_device":true}',
            "The id from the path does not match the id from the body!",
        ),
        (
            "PUT",
            "/network-interfaces/a",
            '{"iface_id":"b","host_dev_name":"t"}',
            "The id from the path [a] does not match the id from the body [b]!",
        ),
        (
            "PUT",
            "/boot-source",
            '{"kernel_image_path":"/nonexistent/k"}',
            "Boot source error: The kernel file cannot be opened: No such file or directory "
            "(os error 2)",
        ),
        (
            "PUT",
            "/machine-config",
            '{"vcpu_count":0,"mem_size_mib":128}',
            "Machine config error: The number of vCPUs must be greater than 0, less than 32 and "
            "must be 1 or an even number if SMT is enabled.",
        ),
        (
            "PUT",
            "/machine-config",
            '{"vcpu_count":3,"mem_size_mib":128,"smt":true}',
            "Machine config error: The number of vCPUs must be greater than 0, less than 32 and "
            "must be 1 or an even number if SMT is enabled.",
        ),
        (
            "PUT",
            "/machine-config",
            '{"vcpu_count":2,"mem_size_mib":0}',
            "Machine config error: The memory size (MiB) is either 0, or not a multiple of the "
            "configured page size.",
        ),
        (
            "PUT",
            "/machine-config",
            '{"vcpu_count":300,"mem_size_mib":128}',
            "An error occurred when deserializing the json body of a request: invalid value: "
            "integer `300`, expected u8 at line 1 column 17.",
        ),
        ("PATCH", "/machine-config", "{}", "Empty PATCH request."),
        (
            "PUT",
            "/actions",
            '{"action_type":"InstanceStart"}',
            "Start microvm error: Cannot start microvm without kernel configuration.",
        ),
        (
            "PUT",
            "/actions",
            '{"action_type":"SendCtrlAltDel"}',
            "The requested operation is not supported before starting the microVM.",
        ),
        (
            "PUT",
            "/actions",
            '{"action_type":"FlushMetrics"}',
            "The requested operation is not supported before starting the microVM.",
        ),
        (
            "PUT",
            "/actions",
            '{"action_type":"InstanceStart","x":1}',
            "An error occurred when deserializing the json body of a request: unknown field `x`, "
            "expected `action_type` at line 1 column 34.",
        ),
        (
            "PUT",
            "/actions",
            '{"action_type":"Reboot"}',
            "An error occurred when deserializing the json body of a request: unknown variant "
            "`Reboot`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel` at line 1 "
            "column 23.",
        ),
        (
            "PATCH",
            "/vm",
            '{"state":"Paused"}',
            "The requested operation is not supported before starting the microVM.",
        ),
        (
            "PATCH",
            "/drives/a",
            '{"drive_id":"a"}',
            "The requested operation is not supported before starting the microVM.",
        ),
        (
            "PATCH",
            "/network-interfaces/a",
            '{"iface_id":"a"}',
            "The requested operation is not supported before starting the microVM.",
        ),
        (
            "PUT",
            "/vsock",
            '{"guest_cid":3}',
            "An error occurred when deserializing the json body of a request: missing field "
            "`uds_path` at line 1 column 15.",
        ),
        (
            "PUT",
            "/logger",
            '{"level":"Loud"}',
            "An error occurred when deserializing the json body of a request: unknown variant "
            "`Loud`, expected one of `Off`, `Trace`, `Debug`, `Info`, `Warn`, `Error`.",
        ),
        (
            "PUT",
            "/boot-source",
            '{"kernel_image_path": 5}',
            "An error occurred when deserializing the json body of a request: invalid type: "
            "integer `5`, expected a string at line 1 column 23.",
        ),
        (
            "PUT",
            "/boot-source",
            "{not json",
            "An error occurred when deserializing the json body of a request: key must be a "
            "string at line 1 column 2.",
        ),
    ],
)
def test_error_cases(
    sim: SimRunner, method: str, path: str, body: str | None, message: str
) -> None:
    _, sock = sim.start()
    status, _, resp = raw_request(sock, method, path, body)
    assert status == 400
    assert fault(resp) == message


def test_drive_rules(sim: SimRunner, fc_tmp: Path) -> None:
    _, sock = sim.start()
    files = {}
    for name in ("root1", "root2", "data"):
        files[name] = fc_tmp / f"{name}.img"
        files[name].write_bytes(b"\0" * 1024)

    def put(drive_id: str, path: Path | str, root: bool, ro: bool = False) -> tuple[int, bytes]:
        body = {
            "drive_id": drive_id,
            "path_on_host": str(path),
            "is_root_device": root,
            "is_read_only": ro,
        }
        status, _, resp = raw_request(sock, "PUT", f"/drives/{drive_id}", json.dumps(body))
        return status, resp

    assert put("data", files["data"], False)[0] == 204
    assert put("root1", files["root1"], True)[0] == 204
    status, resp = put("root2", files["root2"], True)
    assert (
        status == 400 and fault(resp) == "Drive config error: A root block device already exists!"
    )
    # Replacing the root drive itself is allowed.
    assert put("root1", files["root2"], True, ro=True)[0] == 204
    status, resp = put("ghost", fc_tmp / "missing.img", False)
    assert status == 400
    assert fault(resp).startswith("Drive config error: Unable to create the virtio block device")
    assert "No such file or directory (os error 2)" in fault(resp)
    drives = json.loads(raw_request(sock, "GET", "/vm/config")[2])["drives"]
    assert [d["drive_id"] for d in drives] == ["root1", "data"]
    assert drives[0]["is_read_only"] is True


def test_drive_read_only_file_needs_is_read_only(sim: SimRunner, fc_tmp: Path) -> None:
    _, sock = sim.start()
    img = fc_tmp / "ro.img"
    img.write_bytes(b"\0" * 1024)
    img.chmod(0o444)
    # root bypasses permission bits, so use a directory to force an open error instead.
    body = {"drive_id": "d", "path_on_host": str(fc_tmp), "is_root_device": False}
    status, _, resp = raw_request(sock, "PUT", "/drives/d", json.dumps(body))
    assert status == 400 and "Is a directory (os error 21)" in fault(resp)


def test_metrics_once_and_files_created(sim: SimRunner, fc_tmp: Path) -> None:
    _, sock = sim.start()
    metrics = fc_tmp / "metrics.json"
    status, _, _ = raw_request(sock, "PUT", "/metrics", json.dumps({"metrics_path": str(metrics)}))
    assert status == 204 and metrics.exists()
    status, _, resp = raw_request(
        sock, "PUT", "/metrics", json.dumps({"metrics_path": str(metrics)})
    )
    assert status == 400
    assert fault(resp) == (
        "Metrics error: Cannot initialize the metrics system due to bad user input: "
        "Reinitialization of metrics not allowed."
    )


def test_metrics_path_flag_blocks_put(sim: SimRunner, fc_tmp: Path) -> None:
    _, sock = sim.start(None, "--metrics-path", str(fc_tmp / "m.json"))
    assert (fc_tmp / "m.json").exists()
    status, _, resp = raw_request(sock, "PUT", "/metrics", '{"metrics_path":"/tmp/x"}')
    assert status == 400 and "Reinitialization of metrics not allowed." in fault(resp)


def test_machine_config_put_patch_get(sim: SimRunner) -> None:
    _, sock = sim.start()
    assert json.loads(raw_request(sock, "GET", "/machine-config")[2]) == {
        "vcpu_count": 1,
        "mem_size_mib": 128,
        "smt": False,
        "track_dirty_pages": False,
        "huge_pages": "None",
    }
    assert (
        raw_request(sock, "PUT", "/machine-config", '{"vcpu_count":2,"mem_size_mib":256}')[0] == 204
    )
    assert raw_request(sock, "PATCH", "/machine-config", '{"mem_size_mib":512}')[0] == 204
    cfg = json.loads(raw_request(sock, "GET", "/machine-config")[2])
    assert (cfg["vcpu_count"], cfg["mem_size_mib"]) == (2, 512)
    status, head, _ = raw_request(
        sock, "PUT", "/machine-config", '{"vcpu_count":2,"mem_size_mib":256,"cpu_template":"T2"}'
    )
    assert status == 204 and b"Deprecation: true\r\n" in head
    assert json.loads(raw_request(sock, "GET", "/machine-config")[2])["cpu_template"] == "T2"


def test_vsock_bound_at_put_and_replaced(sim: SimRunner, fc_tmp: Path) -> None:
    _, sock = sim.start()
    v1, v2 = fc_tmp / "v1.sock", fc_tmp / "v2.sock"
    assert (
        raw_request(sock, "PUT", "/vsock", json.dumps({"guest_cid": 3, "uds_path": str(v1)}))[0]
        == 204
    )
    assert v1.exists()
    # Before boot, connect succeeds (backlog) but nothing answers.
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(0.3)
        c.connect(str(v1))
        c.sendall(b"CONNECT 52\n")
        with pytest.raises(TimeoutError):
            c.recv(10)
    assert (
        raw_request(sock, "PUT", "/vsock", json.dumps({"guest_cid": 3, "uds_path": str(v2)}))[0]
        == 204
    )
    assert not v1.exists() and v2.exists()
    v1.write_text("in the way")
    status, _, resp = raw_request(
        sock, "PUT", "/vsock", json.dumps({"guest_cid": 3, "uds_path": str(v1)})
    )
    assert status == 400
    assert fault(resp) == (
        "Vsock config error: Cannot create backend for vsock device: Error binding to the "
        "host-side Unix socket: Address in use (os error 98)"
    )


def test_payload_limit_exact(sim: SimRunner) -> None:
    _, sock = sim.start(None, "--http-api-max-payload-size", "250")
    raw = raw_exchange(
        sock,
        b"PUT /mmds/config HTTP/1.1\r\nHost: localhost\r\nContent-Length: 260\r\n"
        b"Accept: application/json\r\n\r\nsome body",
    )
    assert raw == (
        b"HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
        b"Content-Type: application/json\r\nContent-Length: 145\r\n\r\n"
        b'{ "error": "Request payload with size 260 is larger than the limit of 250 allowed by '
        b'server.\nAll previous unanswered requests will be dropped." }'
    )


def test_mmds_roundtrip(sim: SimRunner) -> None:
    _, sock = sim.start()
    assert raw_request(sock, "GET", "/mmds")[2] == b"{}"
    assert raw_request(sock, "PUT", "/mmds", '{"latest":{"a":"1"}}')[0] == 204
    assert raw_request(sock, "PATCH", "/mmds", '{"latest":{"b":"2"}}')[0] == 204
    assert json.loads(raw_request(sock, "GET", "/mmds")[2]) == {"latest": {"a": "1", "b": "2"}}


# --------------------------------------------------------------------------- process


def test_version_and_help() -> None:
    from banger_fcsim.main import main

    assert main(["--version"]) == 0


def run_cli(sim: SimRunner, *args: str, timeout: float = 15) -> subprocess.CompletedProcess:
    proc = sim.spawn(*args, console=sim.tmp / "cli.log")
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    out = (sim.tmp / "cli.log").read_text(errors="replace")
    (sim.tmp / "cli.log").unlink()
    return subprocess.CompletedProcess(args, proc.returncode, out, "")


def test_exit_codes(sim: SimRunner, fc_tmp: Path) -> None:
    res = run_cli(sim, "--version")
    assert res.returncode == 0 and res.stdout == "Firecracker v1.16.1\n"
    res = run_cli(sim, "--bogus")
    assert res.returncode == 153 and "Arguments parsing error" in res.stdout
    res = run_cli(sim, "--api-sock")
    assert res.returncode == 153
    res = run_cli(sim, "--api-sock", str(fc_tmp / "x.sock"), "--level", "Loud")
    assert res.returncode == 152
    res = run_cli(sim, "--no-api")
    assert res.returncode == 153
    res = run_cli(sim, "--api-sock", str(fc_tmp / "y.sock"), "--id", "bad_id")
    assert res.returncode == -signal.SIGABRT


def test_refuses_existing_socket_path(sim: SimRunner, fc_tmp: Path) -> None:
    stale = fc_tmp / "stale.sock"
    stale.write_text("")
    res = run_cli(sim, "--api-sock", str(stale))
    assert res.returncode == 1
    assert (
        f"Failed to open the API socket at: {stale}. Check that it is not already used."
        in res.stdout
    )


def test_sigterm_dies_by_signal_and_leaves_socket(sim: SimRunner) -> None:
    proc, sock = sim.start()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert sock.exists()
    with socket.socket(socket.AF_UNIX) as c, pytest.raises(ConnectionRefusedError):
        c.connect(str(sock))


def test_listening_log_line(sim: SimRunner) -> None:
    _, sock = sim.start()
    assert f'Listening on API socket ("{sock}").' in sim.console()
    assert "Running Firecracker v1.16.1" in sim.console()


def test_cleanup_command_without_leftovers(sim: SimRunner) -> None:
    res = system.run([sim.binary, "--cleanup", "--all"], env=sim.env(), timeout=30)
    assert res.returncode == 0
