"""``vm.ports``: the agent's listeners, probed and named from the daemon."""

from __future__ import annotations

from typing import Any

from banger_core import (
    Access,
    BangerError,
    ConflictError,
    Field,
    UnknownMethodError,
    ValidationError,
    rpc_access,
    rpc_params,
)

NAME = "ports"


def _plugin_config(call: Any) -> Any:
    return call.config


@rpc_access(Access.VM)
@rpc_params(ref=Field.str(required=True, max=255))
def ports(params: dict[str, Any], call: Any) -> dict[str, Any]:
    """``vm.ports {ref}`` -> ``{"name", "host", "ports": [rows]}``."""
    from banger_ports.enrich import rows
    from banger_ports.probe import classify

    ref = params.get("ref")
    if not isinstance(ref, str) or not ref:
        raise ValidationError("parameter 'ref' (a VM name or id) is required")
    info = call.call("vm.show", {"ref": ref})
    if info["state"] != "running":
        raise ConflictError(f"VM {info['name']} is {info['state']}; start it to see its ports")
    try:
        answer = call.call("vm.agent", {"ref": info["id"], "path": "/ports"})
    except UnknownMethodError:
        raise BangerError("vm ports needs the guest agent channel: install banger-vsock") from None
    names = info.get("dns_names") or []
    host = names[0] if names else info["ip"]
    timeout = float(_plugin_config(call).get("probe_timeout_seconds", 1.0))
    listed = rows(
        answer.get("ports") or [],
        host,
        info["ip"],
        lambda ip, port: classify(ip, port, timeout, host),
    )
    return {"name": info["name"], "host": host, "ports": listed}
