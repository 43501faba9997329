"""``vm.ports`` tells a missing guest-agent channel (no banger-vsock) by the error's class."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from banger_core import BangerError, NotFoundError, PluginCall, UnknownMethodError
from banger_ports.rpc import ports


class _Server:
    """The daemon side of ``call.call``: ``vm.show`` answers; ``vm.agent`` as given."""

    def __init__(self, agent: BaseException) -> None:
        self.agent = agent
        self.method = "vm.ports"
        self.peer_pid = self.peer_uid = self.peer_gid = 0
        self.cancelled = threading.Event()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if method == "vm.show":
            return {"id": "abc", "name": "web", "state": "running", "ip": "10.0.0.2"}
        raise self.agent


class _Daemon:
    def plugin_config(self, name: str) -> dict[str, Any]:
        return {}


def _call(agent: BaseException) -> PluginCall:
    return PluginCall.wrap(_Server(agent), "ports", _Daemon())  # type: ignore[arg-type]


def test_no_agent_method_means_install_vsock() -> None:
    with pytest.raises(BangerError, match=r"^vm ports needs the guest agent channel: install"):
        ports({"ref": "web"}, _call(UnknownMethodError("unknown method 'vm.agent'")))


def test_a_missing_vm_is_not_mistaken_for_a_missing_method() -> None:
    # The text mentions "unknown method" on purpose: only the class decides.
    with pytest.raises(NotFoundError, match="no VM 'unknown method'"):
        ports({"ref": "web"}, _call(NotFoundError("no VM 'unknown method'")))
