"""``bangerd`` driven the way a user drives it: ``banger daemon ...`` and signals,
against a private BANGER_STATE_DIR."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat

from banger_core.firecracker.launcher import wait_for_exit
from pytest_banger.plugin import start_daemon


def raw_exchange(sock_path, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(sock_path))
        sock.sendall(payload)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def test_start_status_stop(banger_home) -> None:
    paths = banger_home.paths
    down = banger_home.run("daemon", "status")
    assert down.returncode == 3
    assert "not running" in down.stdout
    assert not paths.socket.exists()  # status never starts the daemon

    started = banger_home.run("daemon", "start")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("bangerd started (pid ")
    pid = int(paths.pid_file.read_text())

    again = banger_home.run("daemon", "start")
    assert again.returncode == 0 and "already running" in again.stdout

    info = banger_home.run("daemon", "status", "--json").json()
    assert info["running"] is True
    assert info["pid"] == pid
    assert info["socket"] == str(paths.socket)
    assert info["log"] == str(paths.daemon_log)
    assert info["version"] == "0.1.0"
    assert isinstance(info["plugins"], list)

    text = banger_home.run("daemon", "status").stdout
    for word in (
        f"pid:      {pid}",
        f"socket:   {paths.socket}",
        f"log:      {paths.daemon_log}",
        "plugins:",
    ):
        assert word in text

    stopped = banger_home.run("daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"bangerd stopped (pid {pid}" in stopped.stdout
    assert wait_for_exit(pid, 10.0)
    assert not paths.socket.exists()
    assert not paths.pid_file.exists()
    assert "not running" in banger_home.run("daemon", "stop").stdout


def test_socket_is_private(banger_daemon) -> None:
    mode = os.stat(banger_daemon.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_second_daemon_refuses_to_start(banger_daemon, banger_home) -> None:
    result = banger_home.run_argv([*_bangerd()], timeout=30)
    assert result.returncode == 1
    assert "already running" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # the first one is untouched
    assert banger_daemon.rpc("daemon.status")["pid"] == banger_daemon.pid
    assert banger_daemon.socket.exists()


def test_stale_socket_is_reclaimed(banger_home) -> None:
    paths = banger_home.paths
    paths.run_dir.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(paths.socket))
    stale.close()  # leaves the file with nobody listening, as after a crash
    paths.pid_file.write_text("999999\n")
    handle = start_daemon(banger_home)
    assert handle.rpc("daemon.status")["pid"] == handle.pid
    assert int(paths.pid_file.read_text()) == handle.pid


def test_sigterm_exits_cleanly(banger_daemon) -> None:
    paths = banger_daemon.home.paths
    assert paths.pid_file.exists()
    os.kill(banger_daemon.pid, signal.SIGTERM)
    assert banger_daemon.proc.wait(timeout=10) == 0
    assert not paths.socket.exists()
    assert not paths.pid_file.exists()
    assert "bangerd stopped" in paths.daemon_log.read_text()


def test_unknown_method_and_bad_json(banger_daemon) -> None:
    reply = raw_exchange(banger_daemon.socket, b'{"id": 7, "method": "no.such", "params": {}}\n')
    assert reply == {
        "id": 7,
        "error": {"code": "unknown_method", "message": "unknown method 'no.such'"},
    }
    reply = raw_exchange(banger_daemon.socket, b'{"id": 8, "method": \n')
    assert reply["error"]["code"] == "invalid"
    assert "not valid JSON" in reply["error"]["message"]
    reply = raw_exchange(
        banger_daemon.socket, b'{"id": 9, "method": "daemon.status", "params": [1]}\n'
    )
    assert reply["error"] == {
        "code": "invalid",
        "message": "params of daemon.status must be a JSON object",
    }
    reply = raw_exchange(banger_daemon.socket, b"[1, 2]\n")
    assert reply["error"]["message"] == "request must be a JSON object"
    # The daemon still serves after bad input.
    assert banger_daemon.rpc("daemon.status")["pid"] == banger_daemon.pid


def test_operation_status_of_unknown_id(banger_daemon) -> None:
    reply = raw_exchange(
        banger_daemon.socket, b'{"id": 1, "method": "operation.status", "params": {"id": "nope"}}\n'
    )
    assert reply["error"] == {"code": "not_found", "message": "no operation 'nope'"}


def test_json_logs_at_configured_level(banger_home) -> None:
    banger_home.write_config('[daemon]\nlog_level = "warning"\n')
    start_daemon(banger_home).stop()
    log = banger_home.paths.daemon_log
    assert "listening" not in log.read_text()  # info is below warning

    log.unlink()
    banger_home.write_config('[daemon]\nlog_level = "info"\n')
    handle = start_daemon(banger_home)
    handle.stop()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records, "no log lines"
    assert all("record" in r and "level" in r["record"] for r in records)
    assert any("listening on" in r["record"]["message"] for r in records)
    assert {r["record"]["level"]["name"] for r in records} <= {"INFO", "WARNING", "ERROR"}


def test_env_log_level_reaches_the_daemon(banger_home) -> None:
    banger_home.write_config('[daemon]\nlog_level = "error"\n')
    banger_home.env_overrides["BANGER_LOG_LEVEL"] = "info"
    handle = start_daemon(banger_home)
    handle.stop()
    assert "listening on" in banger_home.paths.daemon_log.read_text()


def test_bad_config_keeps_daemon_from_starting(banger_home) -> None:
    banger_home.write_config('[daemon]\nlog_lvl = "info"\n')
    result = banger_home.run("daemon", "start")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("banger: error: bangerd exited with 1")
    assert "unknown key daemon.log_lvl" in line


def _bangerd() -> list[str]:
    from pytest_banger.plugin import _script

    return _script("bangerd")


SLOW_SERVICE = """
import os
import pathlib
import time

from banger_core import hookimpl


@hookimpl
def banger_daemon_started(daemon):
    time.sleep(1.0)  # a service slow to come up: forces the ordering under test
    pathlib.Path(os.environ["BANGER_STATE_DIR"], "slow-service-up").write_text("up")
"""


def test_daemon_start_returns_once_plugin_services_are_up(banger_home, banger_plugin_site) -> None:
    # `daemon.status` answers during start-up (so status works while it starts);
    # `daemon start` must still wait for the services, or a caller's first use
    # (a DNS query, say) races the plugin that serves it.
    banger_plugin_site.add("slowservice", "banger_slowservice", SLOW_SERVICE)
    banger_home.pythonpath.append(banger_plugin_site.path)
    started = banger_home.run("daemon", "start")
    assert started.returncode == 0, started.stderr
    assert (banger_home.paths.state_dir / "slow-service-up").exists()
    assert banger_home.run("daemon", "status", "--json").json()["ready"] is True
    assert banger_home.run("daemon", "stop").returncode == 0
