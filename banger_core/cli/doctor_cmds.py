"""``banger doctor``: is this host ready?"""

from __future__ import annotations

import click

from banger_core.cli.context import rpc
from banger_core.cli.output import emit_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def doctor(as_json: bool) -> None:
    """Check the host: programs, devices, VMM binary, root disk strategy, plugins."""
    checks = rpc("doctor.run")
    if as_json:
        emit_json(checks)
    else:
        for c in checks:
            mark = "ok  " if c["ok"] else ("FAIL" if c["required"] else "warn")
            source = "" if c["source"] == "core" else f" [{c['source']}]"
            click.echo(f"{mark}  {c['name']}{source}: {c['detail']}")
            if not c["ok"] and c["fix"]:
                click.echo(f"      fix: {c['fix']}")
    if any(c["required"] and not c["ok"] for c in checks):
        raise SystemExit(1)
