"""``banger dns list`` and ``banger dns setup [--undo]`` (imported by the CLI on demand)."""

from __future__ import annotations

from pathlib import Path

import click

from banger_core import emit_json, rpc, table


@click.group()
def dns() -> None:
    """The .vm DNS server: records, and pointing the host's resolver at it."""


@dns.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_(as_json: bool) -> None:
    """Print the .vm records (one per running VM) and the listeners."""
    result = rpc("dns.list")
    if as_json:
        emit_json(result)
        return
    table(
        [(r["name"], r["type"], r["address"], r["ttl"]) for r in result["records"]],
        ["NAME", "TYPE", "ADDRESS", "TTL"],
    )
    for line in result["listeners"]:
        click.echo(f"listening: {line}")


@dns.command()
@click.option("--undo", is_flag=True, help="remove what `banger dns setup` configured")
def setup(undo: bool) -> None:
    """Make the host resolve <name>.vm: configures systemd-resolved when it runs,
    otherwise prints the lines for dnsmasq or resolv.conf."""
    from banger_core import run
    from banger_dns.hostsetup import manual_lines, resolved_commands, resolved_running, target

    info = rpc("dns.info")
    if not resolved_running(Path(info["resolved_dir"])):
        if undo:
            click.echo(
                "systemd-resolved is not running: nothing to undo "
                "(remove the lines you added by hand)"
            )
            return
        click.echo(manual_lines(info))
        return
    for argv in resolved_commands(info, info["resolvectl"], undo=undo):
        run(argv)
        click.echo("ran: " + " ".join(argv))
    if undo:
        click.echo(f"systemd-resolved no longer sends .{info['domain']} to banger")
    else:
        click.echo(
            f"systemd-resolved sends .{info['domain']} to {target(info)} "
            f"(link {info['bridge']}); check with `resolvectl query <name>.vm`"
        )
