"""``banger vm exec``, ``vm cp`` and ``vm health`` (cheap to import: work happens in callbacks)."""

from __future__ import annotations

from typing import Any

import click


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("ref")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--env",
    "-e",
    "env",
    multiple=True,
    metavar="K=V",
    help="set a variable for the program (repeatable)",
)
@click.option(
    "--cwd",
    "-w",
    default=None,
    metavar="DIR",
    help="working directory in the guest  [default: root's home]",
)
@click.option("--tty", "-t", is_flag=True, help="run the program on a terminal (interactive)")
def exec_(
    ref: str, argv: tuple[str, ...], env: tuple[str, ...], cwd: str | None, tty: bool
) -> None:
    """Run a program in a VM through its guest agent: banger vm exec VM -- PROGRAM ARGS...

    Arguments arrive exactly as given (no remote shell: run `sh -c '...'` for
    one). stdout and stderr stay apart, stdin is forwarded, Ctrl-C reaches
    the program, and its exit status becomes banger's (127 when the program
    does not exist, 126 when it cannot be run, 255 when the VM or its agent
    went away mid-run). Needs no network in the VM.
    """
    from banger_vsock.session import parse_env, run_exec

    raise SystemExit(run_exec(ref, list(argv), parse_env(env), cwd, tty))


@click.command("cp")
@click.argument("sources", metavar="SRC...", nargs=-1, required=True)
@click.argument("dst")
def cp(sources: tuple[str, ...], dst: str) -> None:
    """Copy files or directory trees between the host and a VM: VM:PATH on one side.

    Modes and symlinks are kept. Copying into an existing directory puts SRC
    inside it; otherwise DST names the copy (its parent must exist). Like cp,
    several sources need DST to be an existing directory, and each lands
    inside it, in order (the first failure stops the copy). A relative VM
    path is relative to /root. Shows progress on a terminal.
    """
    from banger_vsock.copy import run_cp_many

    run_cp_many(list(sources), dst)


@click.command("health")
@click.argument("refs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def health(refs: tuple[str, ...], as_json: bool) -> None:
    """Ask VMs' guest agents whether they answer (over vsock)."""
    from banger_core import rpc, run_on_vms

    if as_json:
        from banger_core import emit_json

        emit_json([rpc("vm.health", {"ref": r}) for r in refs])
        return

    def action(vm: dict[str, Any]) -> str:
        body = rpc("vm.health", {"ref": vm["id"]})
        return (
            f"healthy (agent {body.get('agent_version')}, hostname "
            f"{body.get('hostname')}, up {float(body.get('uptime_seconds') or 0):.0f}s)"
        )

    run_on_vms(list(refs), action)
