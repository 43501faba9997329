"""The hooks banger-dns added to the contract: banger_daemon_status and banger_vm_dns_names."""

from __future__ import annotations

import json
from types import SimpleNamespace

from banger_core import hookimpl
from banger_core.plugins import Hooks

SERVICE = """
from banger_core import hookimpl

@hookimpl
def banger_daemon_status(daemon):
    return {"listeners": ["udp 127.0.0.1:5353", "tcp 127.0.0.1:5353"], "records": 2}
"""


class Named:
    def __init__(self, *names: str) -> None:
        self.names = list(names)

    @hookimpl
    def banger_vm_dns_names(self, vm):
        return [n.format(name=vm.name) for n in self.names]


class Status:
    def __init__(self, result: object) -> None:
        self.result = result

    @hookimpl
    def banger_daemon_status(self, daemon):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_hook_banger_vm_dns_names_collects_in_order_without_duplicates(
    banger_plugin_manager,
) -> None:
    pm = banger_plugin_manager(
        ("a", Named("{name}.vm")), ("b", Named("{name}.lan", "{name}.vm")), ("c", Named())
    )
    assert Hooks(pm).vm_dns_names(SimpleNamespace(name="web")) == ["web.vm", "web.lan"]


def test_hook_banger_daemon_status_per_plugin_and_never_raises(banger_plugin_manager) -> None:
    pm = banger_plugin_manager(
        ("up", Status({"listeners": ["udp x"]})),
        ("quiet", Status(None)),
        ("broken", Status(RuntimeError("boom"))),
    )
    status = Hooks(pm).daemon_status(object())
    assert status == {"up": {"listeners": ["udp x"]}, "broken": {"error": "RuntimeError: boom"}}


def test_daemon_status_shows_plugin_services(banger_home, banger_plugin_site) -> None:
    banger_plugin_site.add("tsvc", "banger_tsvc", SERVICE)
    banger_home.pythonpath += [banger_plugin_site.path]
    assert banger_home.run("daemon", "start").returncode == 0
    try:
        status = json.loads(banger_home.run("daemon", "status", "--json").stdout)
        assert status["plugin_services"]["tsvc"] == {
            "listeners": ["udp 127.0.0.1:5353", "tcp 127.0.0.1:5353"],
            "records": 2,
        }
        text = banger_home.run("daemon", "status").stdout
        assert "tsvc:     listeners udp 127.0.0.1:5353, tcp 127.0.0.1:5353" in text
        assert "tsvc:     records 2" in text
    finally:
        banger_home.run("daemon", "stop")
