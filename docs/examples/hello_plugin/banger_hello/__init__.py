"""banger-hello: an example plugin.

It adds a config section, a CLI command, an RPC method, a doctor check, and
takes part in the VM lifecycle. This module is imported by the CLI too, so
it imports only banger_core's light modules; daemon-side code lives in
``banger_hello.daemon`` and is imported inside the hooks that need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from banger_core import Option, ValidationError, hookimpl

NAME = "hello"


@hookimpl
def banger_config_defaults() -> dict[str, Option]:
    return {
        "greeting": Option("hello", "what `banger hello` says"),
        "shout": Option(False, "upper-case the greeting"),
    }


@hookimpl
def banger_cli_commands() -> list[Any]:
    import click

    @click.command("hello")
    @click.argument("who", default="world")
    @click.option("--json", "as_json", is_flag=True, help="print JSON")
    def hello(who: str, as_json: bool) -> None:
        """Ask the daemon to greet WHO."""
        from banger_core import emit_json, rpc

        result = rpc("hello.greet", {"who": who})
        if as_json:
            emit_json(result)
        else:
            click.echo(result["message"])

    return [hello]


@hookimpl
def banger_rpc_methods() -> dict[str, Any]:
    from banger_hello import daemon

    return {"hello.greet": daemon.greet}


@hookimpl
def banger_daemon_started(daemon: Any) -> None:
    from banger_hello import daemon as impl

    impl.configure(daemon.plugin_config(NAME))


@hookimpl
def banger_doctor_checks(ctx: Any) -> list[Any]:
    from banger_core import Check

    greeting = ctx.plugin_config(NAME).get("greeting", "")
    return [
        Check(
            "hello greeting",
            ok=bool(greeting),
            detail=repr(greeting),
            fix="set [plugins.hello] greeting to a non-empty string",
        )
    ]


@hookimpl
def banger_vm_validate(spec: Any) -> None:
    if spec.name.startswith("goodbye"):
        raise ValidationError(f"hello: VM name {spec.name!r} must not start with 'goodbye'")


@hookimpl
def banger_vm_create(vm: Any, ctx: Any) -> None:
    marker = Path(vm.dir) / "hello.txt"
    marker.write_text(f"hello {vm.name}\n")
    ctx.add_undo(lambda: marker.unlink(missing_ok=True), f"remove {marker}")
    vm.plugin_state(NAME)["marker"] = str(marker)


@hookimpl
def banger_vm_deleted(vm: Any) -> None:
    # Idempotent: the marker may already be gone.
    marker = vm.plugin_state(NAME).get("marker")
    if marker:
        Path(marker).unlink(missing_ok=True)
