"""``banger vm ...``: create, list, show, lifecycle commands, set, logs, stats, ssh."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from banger_core.cli.context import connect, rpc
from banger_core.cli.extend import given_options
from banger_core.cli.output import emit_json, human_bytes, table
from banger_core.cli.refs import run_on_vms
from banger_core.errors import BangerError, CancelledError, ValidationError, error_from_code

_DEFAULTS: dict[str, Any] = {}


def _defaults() -> dict[str, Any]:
    """The daemon's defaults as configured, shown in --help (the daemon applies them).

    Read from the config files only when a help text needs them, so commands
    that show no help (``vm list``) never load the configuration.
    """
    if not _DEFAULTS:
        try:
            from banger_core.config import load_settings

            s = load_settings()
            _DEFAULTS.update(
                image=s.get("vm", "default_image"),
                cpus=s.get("vm", "cpus"),
                memory=f"{s.get('vm', 'memory_mib')}M",
            )
        except BangerError:
            _DEFAULTS.update(image="debian", cpus=2, memory="1024M")
    return _DEFAULTS


class _ConfiguredDefault(click.Option):
    """An option whose help ends with ``[default: X]``, X read from the config when shown."""

    def __init__(self, *args: Any, default_from: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_help = self.help or ""
        self._default_from = default_from

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        """The help line, with the configured default filled in."""
        self.help = f"{self._plain_help}  [default: {_defaults()[self._default_from]}]"
        return super().get_help_record(ctx)


@click.group()
def vm() -> None:
    """Create and manage VMs."""


# -- create -----------------------------------------------------------------------


@vm.command()
@click.argument("name", required=False)
@click.option(
    "--name", "name_option", default=None, help="the VM's name (the same as the NAME argument)"
)
@click.option(
    "--image", default=None, help="image to boot", cls=_ConfiguredDefault, default_from="image"
)
@click.option(
    "--cpus", type=int, default=None, help="vCPUs", cls=_ConfiguredDefault, default_from="cpus"
)
@click.option(
    "--memory",
    default=None,
    help="memory (MiB, or with a K/M/G suffix)",
    cls=_ConfiguredDefault,
    default_from="memory",
)
@click.option("--json", "as_json", is_flag=True, help="print the VM as JSON when ready")
def create(
    name: str | None,
    name_option: str | None,
    image: str | None,
    cpus: int | None,
    memory: str | None,
    as_json: bool,
) -> None:
    """Create a VM and boot it; shows each stage live. Ctrl-C cancels and rolls back.

    The name is the NAME argument or --name NAME.
    """
    if name is not None and name_option is not None and name != name_option:
        raise ValidationError(f"two names given: {name!r} and --name {name_option!r}; give one")
    name = name if name is not None else name_option
    if name is None:
        raise ValidationError("give the VM's name: banger vm create NAME (or --name NAME)")
    params: dict[str, Any] = {"name": name}
    # Only what the user changed is sent: the daemon owns the defaults.
    for key, value in (("image", image), ("cpus", cpus), ("memory", memory)):
        if value is not None:
            params[key] = value
    options = given_options()
    if options:
        params["options"] = options
    result = follow_operation(rpc("vm.create", params), quiet=as_json)
    _warn(result)
    _refresh_member_ssh_config()
    if as_json:
        emit_json(result)
        return
    click.echo(f"VM {result['name']} is ready at {result['ip']}")
    click.echo(f"  connect:  banger vm ssh {result['name']}")


def _warn(result: dict[str, Any]) -> None:
    for line in result.get("warnings") or []:
        click.echo(f"banger: warning: {line}", err=True)


def follow_operation(op: dict[str, Any], *, quiet: bool = False) -> Any:
    """Show an operation's stages live until it ends; Ctrl-C cancels it."""
    tty = sys.stderr.isatty() and not quiet
    shown = 0
    cancelled = False
    with connect() as client:
        while True:
            try:
                status = client.call("operation.status", {"id": op["id"]})
                stages = status["stages"]
                while shown < len(stages) and stages[shown]["status"] != "running":
                    if not quiet:
                        _print_stage(stages[shown], tty)
                    shown += 1
                if tty and shown < len(stages):
                    st = stages[shown]
                    click.echo(
                        f"\r  {st['name']:<18} {st['elapsed']:6.1f}s ...", nl=False, err=True
                    )
                if status["state"] != "running":
                    break
                time.sleep(0.05)
            except KeyboardInterrupt:
                if cancelled:
                    raise
                cancelled = True
                click.echo("\ncancelling (rolling back) ...", err=True)
                client.call("operation.cancel", {"id": op["id"]})
    if status["state"] == "succeeded":
        if not quiet:
            click.echo(f"  {'total':<18} {status['elapsed']:6.2f}s", err=True)
        return status["result"]
    err = status.get("error") or {"code": "error", "message": "failed"}
    if status["state"] == "cancelled":
        raise CancelledError(f"{err['message']}; everything was rolled back")
    raise error_from_code(err["code"], err["message"])


def _print_stage(stage: dict[str, Any], tty: bool) -> None:
    mark = {"done": "ok", "failed": "FAILED", "cancelled": "cancelled"}.get(stage["status"], "")
    prefix = "\r" if tty else ""
    detail = f"  {stage['detail']}" if stage.get("detail") else ""
    click.echo(
        f"{prefix}  {stage['name']:<18} {stage['elapsed']:6.2f}s  {mark}{detail}\033[K"
        if tty
        else f"  {stage['name']:<18} {stage['elapsed']:6.2f}s  {mark}{detail}",
        err=True,
    )


# -- listing ---------------------------------------------------------------------------


@vm.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_(as_json: bool) -> None:
    """List VMs."""
    vms = rpc("vm.list")
    if as_json:
        emit_json(vms)
        return
    table(
        [
            (
                v["name"],
                v["id"],
                v["state"],
                v["image"],
                v["ip"],
                v["cpus"],
                human_bytes(v["memory_mib"] << 20),
                _owner(v.get("owner_uid", 0)),
            )
            for v in vms
        ],
        ["NAME", "ID", "STATE", "IMAGE", "IP", "CPUS", "MEMORY", "OWNER"],
    )


def _owner(uid: int) -> str:
    """A VM owner's user name (the uid when it has no account here)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@vm.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show one VM in detail."""
    info = rpc("vm.show", {"ref": ref})
    if as_json:
        emit_json(info)
        return
    rows = [
        ("name", info["name"]),
        ("id", info["id"]),
        ("state", info["state"]),
        ("image", info["image"]),
        ("cpus", info["cpus"]),
        ("memory", human_bytes(info["memory_mib"] << 20)),
        ("ip", info["ip"]),
        ("mac", info["mac"]),
        ("tap", info["tap"] or "-"),
        ("pid", info["pid"] or "-"),
        ("root disk", f"{info['root_disk']} ({info['root_strategy']})"),
        ("console log", info["console_log"]),
        ("vmm log", info["vmm_log"]),
        ("api socket", info["api_sock"]),
    ]
    if info.get("dns_names"):
        rows.append(("dns names", ", ".join(info["dns_names"])))
    if info.get("last_error"):
        rows.append(("last error", info["last_error"]))
    types = (ctx.obj or {}).get("vm_option_types", {}) if isinstance(ctx.obj, dict) else {}
    for plugin, values in sorted((info.get("options") or {}).items()):
        for key, value in sorted(values.items()):
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            if types.get(f"{plugin}.{key}") == "size" and isinstance(value, int):
                shown = human_bytes(value)
            rows.append((f"--{key.replace('_', '-')} ({plugin})", shown))
    for plugin, state in sorted((info.get("plugins") or {}).items()):
        for key, value in sorted(state.items()):
            rows.append((f"{plugin}.{key}", value))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key + ':':<{width + 1}} {value}")


# -- lifecycle (several refs) ---------------------------------------------------------------


def _call(method: str, **extra: Any) -> Any:
    def action(vm: dict) -> str:
        result = rpc(method, {"ref": vm["id"], **extra})
        how = result.get("how")
        if not how and result.get("stages"):  # a start: what it waited for, and how long
            how = ", ".join(
                f"{st['name']} {st['elapsed']:.2f}s"
                for st in result["stages"]
                if st["name"].startswith("waiting")
            )
        return result["state"] + (f" ({how})" if how else "")

    return action


@vm.command()
@click.argument("refs", nargs=-1, required=True)
def start(refs: tuple[str, ...]) -> None:
    """Start stopped VMs and wait for SSH."""
    run_on_vms(list(refs), _call("vm.start"))


@vm.command()
@click.argument("refs", nargs=-1, required=True)
def stop(refs: tuple[str, ...]) -> None:
    """Stop VMs: Ctrl-Alt-Del, a grace period, then forced cleanup."""
    run_on_vms(list(refs), _call("vm.stop"))


@vm.command()
@click.argument("refs", nargs=-1, required=True)
def restart(refs: tuple[str, ...]) -> None:
    """Stop and start VMs."""
    run_on_vms(list(refs), _call("vm.restart"))


@vm.command()
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "--signal", "-s", "sig", default="SIGKILL", show_default=True, help="signal for the VMM process"
)
def kill(refs: tuple[str, ...], sig: str) -> None:
    """Send a signal to VMs' VMM processes and clean up."""
    run_on_vms(list(refs), _call("vm.kill", signal=sig))


@vm.command()
@click.argument("refs", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="stop running VMs first")
def delete(refs: tuple[str, ...], force: bool) -> None:
    """Delete VMs and their disks."""
    try:
        run_on_vms(list(refs), _call("vm.delete", force=force))
    finally:
        _refresh_member_ssh_config()


def _refresh_member_ssh_config() -> None:
    """Keep a member's installed SSH config current (root's is the daemon's job)."""
    from banger_core.cli.sshinclude import refresh_member_config

    refresh_member_config()


@vm.command("set")
@click.argument("refs", nargs=-1, required=True)
@click.option("--cpus", type=int, default=None, help="vCPUs")
@click.option("--memory", default=None, help="memory (MiB, or with a K/M/G suffix)")
def set_(refs: tuple[str, ...], cpus: int | None, memory: str | None) -> None:
    """Change stopped VMs' CPUs or memory, or plugins' per-VM options."""
    params: dict[str, Any] = {
        k: v for k, v in (("cpus", cpus), ("memory", memory)) if v is not None
    }
    options = given_options()
    if options:
        params["options"] = options
    if not params:
        raise click.UsageError(
            "nothing to change: give --cpus, --memory or a plugin's option (see --help)"
        )

    def action(vm: dict) -> str:
        result = rpc("vm.set", {"ref": vm["id"], **params})
        _warn(result)
        changed = ", ".join(result["changed"]) or "nothing changed"
        return f"updated ({changed})"

    run_on_vms(list(refs), action)


# -- inspection -----------------------------------------------------------------------------


@vm.command()
@click.argument("ref")
@click.option("--follow", "-f", is_flag=True, help="keep printing new output")
@click.option("--vmm", is_flag=True, help="the VMM's log instead of the serial console")
def logs(ref: str, follow: bool, vmm: bool) -> None:
    """Print a VM's serial console (or VMM log)."""
    which = "vmm" if vmm else "console"
    chunk = rpc("vm.logs", {"ref": ref, "log": which})
    click.echo(f"==> {chunk['path']} <==", err=True)
    click.echo(chunk["data"], nl=False)
    offset = chunk["offset"]
    try:
        with connect() as client:
            while follow:
                chunk = client.call("vm.logs", {"ref": ref, "log": which, "offset": offset})
                if chunk["data"]:
                    click.echo(chunk["data"], nl=False)
                    offset = chunk["offset"]
                elif not chunk["running"]:
                    break
                else:
                    time.sleep(0.2)
    except KeyboardInterrupt:
        pass


@vm.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def stats(ref: str, as_json: bool) -> None:
    """VMM CPU time and memory use."""
    info = rpc("vm.stats", {"ref": ref})
    if as_json:
        emit_json(info)
        return
    if not info.get("pid"):
        click.echo(f"{info['name']}: {info['state']} (no VMM process)")
        return
    table(
        [
            (
                info["name"],
                info["pid"],
                f"{info['cpu_seconds']:.2f}s",
                human_bytes(info["rss_bytes"]),
                info["threads"],
                f"{info['uptime']:.0f}s",
            )
        ],
        ["NAME", "PID", "CPU", "RSS", "THREADS", "UPTIME"],
    )


@vm.command(context_settings={"ignore_unknown_options": True})
@click.argument("ref")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(ref: str, command: tuple[str, ...]) -> None:
    """SSH into a VM as root; anything after `--` runs as a remote command.

    As with ssh itself, the words after `--` are joined with spaces into ONE
    command line that the guest's shell interprets (pipes, `;`, `$VARS`,
    globs all work; quote what the shell should not see):

    \b
      banger vm ssh web -- 'cd /srv && ls *.log | wc -l'
      banger vm ssh web -- echo '$HOME'      (prints /root)

    To pass arguments exactly as given, with no shell, use
    `banger vm exec VM -- PROGRAM ARGS...` (banger-vsock).

    After an interactive session ends, prints one line reminding that the VM
    is still running. The exit status is ssh's.
    """
    import signal

    from banger_core import system
    from banger_core.cli.fdpass import ssh_options
    from banger_core.doctor import not_ready_error, program_check

    check = program_check("ssh")  # the client runs ssh: check before asking the daemon
    if check.blocks("vm.ssh"):
        raise not_ready_error([check])
    info = rpc("vm.ssh_info", {"ref": ref})
    # The daemon connects (from its network namespace) and passes us the socket.
    argv = [
        "ssh",
        *ssh_options(info),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        f"{info['user']}@{info['ip']}",
    ]
    if command:
        argv += ["--", *command]
    # ssh runs as our child (not exec) so we can remind the user afterwards;
    # Ctrl-C belongs to the session, not to us.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = system.spawn(
            argv,
            stdin=None,
            new_session=False,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    if not command:
        _still_running_reminder(info["name"])
    raise SystemExit(code if code >= 0 else 128 - code)


def _still_running_reminder(name: str) -> None:
    """One line after an interactive session: the VM keeps running (asked via vm.health)."""
    try:
        try:
            rpc("vm.health", {"ref": name})  # the agent answers: the VM runs
            running = True
        except BangerError:  # not answering, or no vsock plugin: ask the core
            running = rpc("vm.show", {"ref": name})["state"] == "running"
    except BangerError:
        return
    if running:
        click.echo(
            f"banger: VM {name} is still running; stop it with `banger vm stop {name}`", err=True
        )


@vm.command("ssh-config")
@click.argument("refs", nargs=-1)
@click.option(
    "--install",
    is_flag=True,
    help="add an Include of banger's kept-current file to ~/.ssh/config (once)",
)
def ssh_config(refs: tuple[str, ...], install: bool) -> None:
    """Print OpenSSH Host blocks for VMs (all when none named): `ssh NAME.vm` then works.

    With --install, ~/.ssh/config gets `Include <file>` once; the daemon
    rewrites that file whenever a VM is created or deleted, so scp, rsync
    and editors' remote-SSH always see every VM.
    """
    from banger_core.cli import sshinclude

    if install and refs:
        raise click.UsageError("--install covers every VM; give no VM names with it")
    info = rpc("vm.ssh_config", {"refs": list(refs)})
    if not install:
        click.echo(sshinclude.member_view(info)[0], nl=False)
        return
    # Root includes the file the daemon keeps current; a member (who cannot read
    # it, nor the key it names) includes a copy of their own, which their
    # banger commands keep current.
    path = str(sshinclude.write_member_config(info)) if info.get("member") else info["path"]
    user_config = sshinclude.user_ssh_config()
    try:
        changed, user_config = sshinclude.install_include(path, user_config)
    except OSError as exc:
        raise BangerError(
            f"cannot add `Include {path}` to {user_config}: {exc.strerror or exc}; "
            f"add that line yourself, or use `ssh -F {path} NAME`"
        ) from None
    if changed:
        click.echo(f"added `Include {path}` to {user_config}")
    else:
        click.echo(f"{user_config} already includes {path}")
