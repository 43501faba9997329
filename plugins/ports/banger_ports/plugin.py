"""The ports plugin's hooks. Cheap to import: the CLI loads this module.

The listener list comes from the guest agent's ``/ports`` through the
``vm.agent`` RPC method (served by banger-vsock) and the VM's DNS names from
the core's ``vm.show``; this plugin imports neither.
"""

from __future__ import annotations

from typing import Any

from banger_core import hookimpl


@hookimpl
def banger_config_defaults() -> dict[str, Any]:
    from banger_core import Option

    return {"probe_timeout_seconds": Option(1.0, "how long one HTTP(S) probe of a port may take")}


@hookimpl
def banger_rpc_methods() -> dict[str, Any]:
    from banger_ports.rpc import ports

    return {"vm.ports": ports}


@hookimpl
def banger_cli_subcommands() -> dict[str, list[Any]]:
    from banger_ports.cli import ports

    return {"vm": [ports]}
