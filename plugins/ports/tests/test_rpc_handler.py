"""vm.ports's handler, driven with the harness's fake RPC call (no daemon)."""

from __future__ import annotations

import pytest

from banger_core import BangerError, ConflictError, NotFoundError
from banger_ports.rpc import ports
from pytest_banger import FakeRPCCall

RUNNING = {"id": "0123456789ab", "name": "web", "state": "running", "ip": "127.0.0.1"}


def test_rows_come_from_the_agent_answer():
    call = FakeRPCCall(
        "ports",
        {"probe_timeout_seconds": 0.2},
        methods={
            "vm.show": lambda p: {**RUNNING, "dns_names": ["web.vm"]},
            "vm.agent": lambda p: (
                {"ports": [{"port": 1, "proto": "udp", "address": "0.0.0.0", "process": "x"}]}
                if p == {"ref": RUNNING["id"], "path": "/ports"}
                else {}
            ),
        },
    )
    result = ports({"ref": "web"}, call)
    assert result["name"] == "web" and result["host"] == "web.vm"
    assert [(r["port"], r["proto"]) for r in result["ports"]] == [(1, "udp")]


def test_without_the_vsock_plugin_it_says_what_to_install():
    call = FakeRPCCall("ports", methods={"vm.show": lambda p: RUNNING})  # no vm.agent method
    with pytest.raises(BangerError, match="install banger-vsock"):
        ports({"ref": "web"}, call)


def test_a_stopped_vm_is_refused_and_errors_pass_through():
    stopped = FakeRPCCall("ports", methods={"vm.show": lambda p: {**RUNNING, "state": "stopped"}})
    with pytest.raises(ConflictError, match="VM web is stopped; start it"):
        ports({"ref": "web"}, stopped)

    def missing(params):
        raise NotFoundError(f"no VM {params['ref']!r}")

    with pytest.raises(NotFoundError, match="no VM 'ghost'"):
        ports({"ref": "ghost"}, FakeRPCCall("ports", methods={"vm.show": missing}))
