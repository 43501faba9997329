"""``banger plugins`` and ``banger config show``."""

from __future__ import annotations

import click

from banger_core.cli.output import emit_json, table


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_obj
def plugins(obj: dict, as_json: bool) -> None:
    """List plugins: name, distribution, version, hooks, status."""
    infos = [i.as_dict() for i in obj["pm"].infos.values()]
    if as_json:
        emit_json(infos)
        return
    rows = [(i["name"], i["distribution"], i["version"], i["status"],
             ", ".join(h.removeprefix("banger_") for h in i["hooks"]) or i["error"])
            for i in infos]
    table(rows, ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS"])


@click.group("config")
def config() -> None:
    """Inspect configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_obj
def config_show(obj: dict, as_json: bool) -> None:
    """Print the effective configuration and where each value came from."""
    from banger_core.config import load_settings

    settings = load_settings(obj["hooks"].config_defaults())
    rows = settings.rows()
    if as_json:
        emit_json(rows)
        return
    table([(f"{r['section']}.{r['key']}", repr(r["value"]), r["source"]) for r in rows],
          ["KEY", "VALUE", "SOURCE"])
