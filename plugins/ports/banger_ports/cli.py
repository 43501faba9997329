"""``banger vm ports`` (cheap to import)."""

from __future__ import annotations

import click


@click.command("ports")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def ports(ref: str, as_json: bool) -> None:
    """List a VM's listening ports: PROTO ENDPOINT PROCESS COMMAND.

    TCP ports are probed HTTPS first, then HTTP; web endpoints show as
    http(s)://NAME.vm:PORT/ links (the VM's IP without the dns plugin).
    Ports bound to the guest's loopback show its address.
    """
    from banger_core import emit_json, rpc, table

    result = rpc("vm.ports", {"ref": ref})
    if as_json:
        emit_json(result["ports"])
        return
    table(
        [
            (r["proto"], r["endpoint"], r["process"] or "-", r["command"] or "-")
            for r in result["ports"]
        ],
        ["PROTO", "ENDPOINT", "PROCESS", "COMMAND"],
    )
