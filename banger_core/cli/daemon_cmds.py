"""``banger daemon start|stop|status``."""

from __future__ import annotations

import time
from typing import Any

import click

from banger_core.cli.context import daemon_running, rpc, skip_version_check, start_daemon
from banger_core.cli.output import emit_json
from banger_core.errors import DaemonError, DeniedError
from banger_core.paths import Paths


@click.group()
def daemon() -> None:
    """Manage bangerd, the daemon that owns VMs and host state."""
    # These commands manage the daemon themselves; `status` shows its version.
    skip_version_check()


@daemon.command()
def start() -> None:
    """Start the daemon in the background (no-op when it runs)."""
    paths = Paths.from_env()
    if daemon_running(paths):
        click.echo(f"bangerd already running on {paths.socket}")
        return
    start_daemon(paths)
    status = rpc("daemon.status", autostart=False)
    click.echo(f"bangerd started (pid {status['pid']}, socket {status['socket']})")


def restart_daemon(paths: Paths, timeout: float = 30.0) -> None:
    """Stop the running daemon (VMs keep running) and start a new one."""
    if daemon_running(paths):
        _stop(paths, timeout)
    start_daemon(paths)


@daemon.command()
@click.option("--timeout", default=30.0, show_default=True, help="seconds to wait for exit")
def restart(timeout: float) -> None:
    """Restart the daemon (to load newly installed plugins). Running VMs keep running."""
    paths = Paths.from_env()
    restart_daemon(paths, timeout)
    status = rpc("daemon.status", autostart=False)
    click.echo(f"bangerd restarted (pid {status['pid']}, socket {status['socket']})")


@daemon.command()
@click.option("--timeout", default=30.0, show_default=True, help="seconds to wait for exit")
def stop(timeout: float) -> None:
    """Stop the daemon. Running VMs keep running."""
    paths = Paths.from_env()
    pid = _stop(paths, timeout)
    if pid is None:
        click.echo("bangerd is not running")
        return
    click.echo(f"bangerd stopped (pid {pid}, socket {paths.socket})")


def _stop(paths: Paths, timeout: float) -> int | None:
    """Ask the daemon to stop and wait for its process to exit; None when none ran."""
    try:
        result = rpc("daemon.stop", autostart=False)
    except DeniedError:
        raise
    except DaemonError:
        return None
    pid = int(result["pid"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        raise DaemonError(f"bangerd (pid {pid}) did not exit within {timeout:.0f}s")
    return pid


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def describe_vmm(vmm: dict[str, Any]) -> str:
    """``fcsim /venv/bin/banger-fcsim (Firecracker v1.16.1; [firecracker] backend)``."""
    if not vmm.get("found"):
        return f"{vmm.get('backend')}: {vmm.get('problem')}; {vmm.get('fix')}"
    why = [f"Firecracker v{vmm['version']}"] if vmm.get("version") else []
    why += [vmm["source"]] if vmm.get("source") else []
    return f"{vmm.get('backend')} {vmm.get('program')} ({'; '.join(why)})"


@daemon.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def status(as_json: bool) -> None:
    """Show whether the daemon runs: pid, socket, log, version, plugins."""
    paths = Paths.from_env()
    try:
        info = rpc("daemon.status", autostart=False)
    except DeniedError:
        raise  # it runs; we may not use it (the message says how to fix that)
    except DaemonError:
        if as_json:
            emit_json({"running": False, "socket": str(paths.socket)})
        else:
            click.echo(f"bangerd is not running (socket {paths.socket})")
        raise SystemExit(3)
    info["running"] = True
    if as_json:
        emit_json(info)
        return
    degraded = info.get("status") == "degraded"
    click.echo(f"bangerd {info['version']} running" + (" (DEGRADED)" if degraded else ""))
    click.echo(f"  pid:      {info['pid']}")
    click.echo(f"  socket:   {info['socket']}")
    click.echo(f"  log:      {info['log']}")
    click.echo(f"  state:    {info['state_dir']}")
    click.echo(f"  uptime:   {info['uptime']}s")
    click.echo(f"  plugins:  {', '.join(info['plugins']) or '(none)'}")
    vmm = info.get("vmm") or {}
    if vmm:
        click.echo(f"  vmm:      {describe_vmm(vmm)}")
    for line in info.get("plugin_failures", []):
        click.echo(f"  error:    {line}")
    for line in info.get("degraded", []):
        click.echo(f"  degraded: {line}")
    for name, svc in (info.get("services") or {}).items():
        if svc:
            details = ", ".join(f"{k} {v}" for k, v in svc.items())
            click.echo(f"  {name + ':':<9} {details}")
    for name, svc in (info.get("plugin_services") or {}).items():
        for key, value in svc.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            click.echo(f"  {name + ':':<9} {key} {shown}")
