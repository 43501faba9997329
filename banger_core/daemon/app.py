"""The daemon application: settings, plugins, store, services and RPC server wired together."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from loguru import logger

import banger_core
from banger_core.config import Settings, load_settings
from banger_core.daemon.operations import OperationManager
from banger_core.daemon.server import RPCCall, RPCServer, install_signal_handlers
from banger_core.errors import BangerError, DaemonError
from banger_core.plugins import BangerPluginManager, Hooks, failure_lines, get_plugin_manager
from banger_core.rpc.client import RPCClient


class Daemon:
    """Everything ``bangerd`` runs. Plugins receive it in ``banger_daemon_started``."""

    def __init__(self, settings: Settings, pm: BangerPluginManager) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.pm = pm
        self.hooks = Hooks(pm, settings)
        self.operations = OperationManager()
        self.server = RPCServer(self.paths.socket, group=settings.get("daemon", "socket_group"))
        self.started_at = time.time()
        self.store: Any = None
        self.services: dict[str, Any] = {}
        self.degraded: list[str] = []  # plugin services that failed to start
        self.vms: Any = None

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The effective ``[plugins.<name>]`` section."""
        return self.settings.plugin(name)

    # -- what plugins get (banger_core.DaemonAPI) ----------------------------
    def vm(self, ref: str) -> Any:
        """A VM by name, id or unique id prefix."""
        return self.vms.resolve(ref)

    def list_vms(self) -> list[Any]:
        """Every VM, by name."""
        return self.vms.all()

    def save_plugin_state(self, vm: Any, name: str) -> None:
        """Store ``vm.plugin_state(name)`` (after an RPC handler changed it)."""
        self.vms.save_plugin_state(vm, name)

    @property
    def state_dir(self) -> Path:
        """banger's state directory."""
        return self.paths.state_dir

    @property
    def runner(self) -> Any:
        """Runs external programs."""
        from banger_core import system

        return system.run

    # -- core RPC methods ----------------------------------------------------
    def status(self, params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        """``daemon.status``: who is running, where, with which plugins."""
        infos = self.pm.infos.values()
        return {
            "pid": os.getpid(),
            "version": banger_core.__version__,
            "socket": str(self.paths.socket),
            "log": str(self.paths.daemon_log),
            "state_dir": str(self.paths.state_dir),
            "uptime": round(time.time() - self.started_at, 1),
            "ready": self.server.ready,
            "plugins": sorted(i.name for i in infos if i.status == "loaded"),
            "plugin_failures": failure_lines(self.pm) + self.hooks.problems,
            "status": "degraded" if self.degraded else "ok",
            "degraded": list(self.degraded),
            "operations": len(self.operations.running()),
            "services": {name: getattr(svc, "describe", lambda: {})()
                         for name, svc in self.services.items()},
            "plugin_services": self.hooks.daemon_status(self),
        }

    def stop(self, params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        """``daemon.stop``: shut down after answering."""
        self.server.stop()
        return {"stopping": True, "pid": os.getpid()}

    def plugins_list(self, params: dict[str, Any], call: RPCCall) -> list[dict[str, Any]]:
        """``plugins.list``: what the daemon loaded."""
        return [i.as_dict() for i in self.pm.infos.values()]

    def config_show(self, params: dict[str, Any], call: RPCCall) -> list[dict[str, Any]]:
        """``config.show``: the daemon's effective configuration."""
        return self.settings.rows()

    def op_status(self, params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        """``operation.status``."""
        return self.operations.get(str(params.get("id", ""))).as_dict()

    def op_cancel(self, params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        """``operation.cancel``."""
        return self.operations.cancel(str(params.get("id", ""))).as_dict()

    def register_core_methods(self) -> None:
        """Register the methods every daemon has."""
        # These answer while services still start (the CLI's autostart polls
        # daemon.status); every other method waits until start-up is done.
        for name, handler in {
            "daemon.status": self.status,
            "daemon.stop": self.stop,
            "plugins.list": self.plugins_list,
            "config.show": self.config_show,
            "operation.status": self.op_status,
            "operation.cancel": self.op_cancel,
        }.items():
            self.server.register(name, handler, early=True)

    def register_plugin_methods(self) -> None:
        """Register the methods plugins add; a clash is logged and skipped."""
        for plugin, name, handler in self.hooks.rpc_methods():
            try:
                self.server.register(name, self._plugin_handler(plugin, handler),
                                     owner=f"plugin {plugin}")
            except Exception as exc:
                logger.error("{}", exc)

    def _plugin_handler(self, plugin: str, handler: Any) -> Any:
        """``handler`` called with the plugin's :class:`~banger_core.api.PluginCall`."""
        import functools
        import inspect

        from banger_core.api import PluginCall

        if inspect.iscoroutinefunction(handler):
            @functools.wraps(handler)
            async def run_async(params: dict[str, Any], call: RPCCall) -> Any:
                return await handler(params, PluginCall.wrap(call, plugin, self))
            return run_async

        @functools.wraps(handler)
        def run(params: dict[str, Any], call: RPCCall) -> Any:
            return handler(params, PluginCall.wrap(call, plugin, self))
        return run

    # -- running -----------------------------------------------------------
    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT or ``daemon.stop``."""
        from banger_core.services import build_services

        self.paths.ensure()
        self._lock_fd = self._take_lock()
        self._claim_socket()
        self.register_core_methods()
        build_services(self)
        self.register_plugin_methods()
        await self.server.start(ready=False)
        self.paths.pid_file.write_text(f"{os.getpid()}\n")
        install_signal_handlers(self.server.stop)
        for line in failure_lines(self.pm):
            logger.error("{}", line)
        fatal: BaseException | None = None
        try:
            await asyncio.to_thread(self._after_listen)
        except Exception as exc:
            # A core service that cannot start (the bridge, reconcile) leaves
            # nothing to serve: stop with the reason instead of pretending.
            logger.exception("start-up of services failed")
            fatal = exc
            self.server.stop()
        self.server.mark_ready()
        logger.info("bangerd {} listening on {}", banger_core.__version__, self.paths.socket)
        try:
            await self.server.wait_stopped()
        finally:
            logger.info("bangerd stopping")
            await self.server.close()
            await asyncio.to_thread(self._shutdown)
            try:
                self.paths.pid_file.unlink()
            except FileNotFoundError:
                pass
            logger.info("bangerd stopped")
        if fatal is not None:
            detail = str(fatal) if isinstance(fatal, BangerError) else \
                f"{type(fatal).__name__}: {fatal}"
            raise DaemonError(f"start-up failed, bangerd stopped: {detail}") from fatal

    def _after_listen(self) -> None:
        for svc in self.services.values():
            start = getattr(svc, "start", None)
            if start:
                start()
        # A plugin's service failing does not stop the others or the daemon:
        # `banger daemon status` shows the daemon as degraded, naming it.
        for line in self.hooks.daemon_started(self):
            logger.error("{}", line)
            self.degraded.append(line)

    def _shutdown(self) -> None:
        for line in self.hooks.daemon_stopping(self):
            logger.error("{}", line)
        for svc in reversed(list(self.services.values())):
            stop = getattr(svc, "stop", None)
            if stop:
                try:
                    stop()
                except Exception:
                    logger.exception("stopping a service failed")

    def _take_lock(self) -> int:
        """Hold ``bangerd.lock`` for the daemon's lifetime: one daemon per state dir.

        The socket check alone is racy (two CLI commands may autostart the
        daemon at once, and asyncio replaces an existing socket file); the
        kernel drops the lock when the process exits, however it exits.
        """
        import fcntl

        fd = os.open(self.paths.run_dir / "bangerd.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                pid = self.paths.pid_file.read_text().strip() or "?"
            except OSError:
                pid = "?"
            raise DaemonError(f"another bangerd (pid {pid}) is already running for "
                              f"{self.paths.state_dir}") from None
        return fd

    def _claim_socket(self) -> None:
        sock = self.paths.socket
        if sock.exists():
            try:
                with RPCClient(sock, timeout=2.0) as client:
                    client.call("daemon.status")
            except DaemonError:
                sock.unlink(missing_ok=True)  # stale: its daemon is gone
            else:
                raise DaemonError(f"another bangerd is already serving {sock}")


def build_daemon(config_files: list[Path] | None = None) -> Daemon:
    """Load settings and plugins the way ``bangerd`` does."""
    settings = load_settings(files=config_files)
    pm = get_plugin_manager(disabled=settings.get("plugins", "disabled"))
    schema = Hooks(pm).config_defaults()
    settings = load_settings(schema, files=config_files, paths=settings.paths)
    return Daemon(settings, pm)
