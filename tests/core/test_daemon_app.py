"""The daemon object in-process: core methods, plugin RPC methods, clashes."""

from __future__ import annotations

import pytest
from loguru import logger

from banger_core import hookimpl
from banger_core.config import load_settings
from banger_core.daemon.app import Daemon
from banger_core.daemon.server import RPCCall


class Ports:
    @hookimpl
    def banger_rpc_methods(self):
        return {
            "vm.ports": lambda params, call: {"ports": [22]},
            "daemon.status": lambda params, call: "hijacked",
        }


class Other:
    @hookimpl
    def banger_rpc_methods(self):
        return {"vm.ports": lambda params, call: "second"}


@pytest.fixture
def log_lines():
    lines: list[str] = []
    sink = logger.add(lambda msg: lines.append(str(msg)), level="ERROR", format="{message}")
    yield lines
    logger.remove(sink)


def make_daemon(pm, tmp_path, monkeypatch) -> Daemon:
    monkeypatch.setenv("BANGER_STATE_DIR", str(tmp_path))
    daemon = Daemon(load_settings(files=[]), pm)
    daemon.register_core_methods()
    daemon.register_plugin_methods()
    return daemon


def call(daemon: Daemon, method: str, params: dict | None = None):
    return daemon.server.methods[method].handler(params or {}, RPCCall(method, 1, 0, 0))


def test_plugin_methods_registered_and_clashes_refused(
    banger_plugin_manager, tmp_path, monkeypatch, log_lines
) -> None:
    daemon = make_daemon(
        banger_plugin_manager(("ports", Ports()), ("other", Other())), tmp_path, monkeypatch
    )
    methods = daemon.server.methods
    assert methods["daemon.status"].owner == "core"
    assert call(daemon, "daemon.status")["pid"] > 0
    winner = methods["vm.ports"].owner
    loser = {"plugin ports", "plugin other"} - {winner}
    assert call(daemon, "vm.ports") == ({"ports": [22]} if winner == "plugin ports" else "second")
    text = "\n".join(log_lines)
    assert "'daemon.status' from plugin ports clashes with the one from core" in text
    assert f"'vm.ports' from {loser.pop()} clashes with the one from {winner}" in text


def test_status_and_plugins_list(banger_plugin_manager, tmp_path, monkeypatch) -> None:
    daemon = make_daemon(banger_plugin_manager(("ports", Ports())), tmp_path, monkeypatch)
    status = call(daemon, "daemon.status")
    assert status["plugins"] == ["ports"]
    assert status["socket"] == str(tmp_path / "run" / "bangerd.sock")
    assert status["ready"] is False  # not started
    listed = call(daemon, "plugins.list")
    assert [p["name"] for p in listed] == ["ports"]
    rows = call(daemon, "config.show")
    assert {"section": "vm", "key": "cpus", "value": 2, "source": "default"} in rows
