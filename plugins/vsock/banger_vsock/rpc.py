"""The vsock plugin's RPC methods (daemon side)."""

from __future__ import annotations

from typing import Any

from banger_core import (
    Access,
    BangerError,
    ConflictError,
    Field,
    ValidationError,
    rpc_access,
    rpc_params,
)

NAME = "vsock"
GET_PATHS = ("/healthz", "/ports")


def _vm(params: dict[str, Any], call: Any) -> Any:
    ref = params.get("ref")
    if not isinstance(ref, str) or not ref:
        raise ValidationError("parameter 'ref' (a VM name or id) is required")
    return call.vm(ref)


def _connect(vm: Any, timeout: float = 2.0) -> Any:
    from banger_vsock.hostconn import connect_port

    if vm.state != "running":
        raise ConflictError(
            f"VM {vm.name} is {vm.state}; the guest agent answers only while "
            f"it runs (banger vm start {vm.name})"
        )
    state = vm.plugin_state(NAME)
    if "cid" not in state:
        raise ConflictError(
            f"VM {vm.name} has no vsock device (it booted before banger-vsock "
            "was installed); restart it"
        )
    return connect_port(vm.vsock_path, int(state.get("port", 1024)), timeout=timeout)


REF = Field.str(required=True, max=255)


@rpc_access(Access.VM)
@rpc_params(ref=REF)
def health(params: dict[str, Any], call: Any) -> dict[str, Any]:
    """``vm.health {ref}``: the agent's ``/healthz`` answer, with the VM's name."""
    from banger_vsock import replies
    from banger_vsock.protocol import AgentConnection

    vm = _vm(params, call)
    try:
        with AgentConnection(_connect(vm)) as conn:
            conn.sock.settimeout(5.0)
            body = replies.health(conn.get_json("/healthz"))
    except BangerError as exc:
        if isinstance(exc, ConflictError):
            raise
        raise BangerError(f"VM {vm.name}: guest agent not answering: {exc}") from None
    if body["status"] != "ok":
        raise BangerError(f"VM {vm.name}: guest agent not healthy: status {body['status']!r}")
    # The guest's answer never overrides what the host knows (name, state).
    return {**body, "name": vm.name, "state": vm.state}


@rpc_access(Access.VM)
@rpc_params(ref=REF, path=Field.enum(*GET_PATHS, required=True))
def agent_get(params: dict[str, Any], call: Any) -> Any:
    """``vm.agent {ref, path}``: a JSON GET on the agent (``/healthz``, ``/ports``)."""
    from banger_vsock.protocol import AgentConnection

    path = params.get("path")
    if path not in GET_PATHS:
        raise ValidationError(f"path {path!r} is not one of {', '.join(GET_PATHS)}")
    from banger_vsock import replies

    vm = _vm(params, call)
    try:
        with AgentConnection(_connect(vm)) as conn:
            conn.sock.settimeout(10.0)
            return replies.VALIDATORS[path](conn.get_json(path))
    except BangerError as exc:
        if isinstance(exc, ConflictError):
            raise
        raise BangerError(f"VM {vm.name}: {exc}") from None


@rpc_access(Access.VM)
@rpc_params(ref=REF)
def agent_connect(params: dict[str, Any], call: Any) -> Any:
    """``vm.agent_connect {ref}``: a connected agent stream, handed over as a descriptor."""
    from banger_core import PassFd

    vm = _vm(params, call)
    sock = _connect(vm)
    fd = sock.detach()
    return PassFd({"name": vm.name, "protocol": 2}, fd)


METHODS = {"vm.health": health, "vm.agent": agent_get, "vm.agent_connect": agent_connect}
