"""The daemon application: settings, plugins, store, services and RPC server wired together."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from loguru import logger

import banger_core
from banger_core.api import PluginDaemon
from banger_core.config import Settings, load_settings
from banger_core.daemon.operations import OperationManager
from banger_core.daemon.policy import CORE_RULES, PLUGIN_DEFAULT, Policy
from banger_core.daemon.server import RPCCall, RPCServer, install_signal_handlers
from banger_core.errors import BangerError, DaemonError
from banger_core.plugins import BangerPluginManager, Hooks, failure_lines, get_plugin_manager
from banger_core.rpc.access import Access, access_of
from banger_core.rpc.client import RPCClient
from banger_core.rpc.schema import Field, with_params
from banger_core.vmmbackends import FIRECRACKER, backend_for, choose_for


def _log_problem(line: str) -> None:
    """A misbehaving plugin, once per distinct problem, in the daemon's log."""
    logger.warning("{}", line)


class Daemon:
    """Everything ``bangerd`` runs (plugins get :attr:`plugin_api`, never this object)."""

    def __init__(self, settings: Settings, pm: BangerPluginManager) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.pm = pm
        self.hooks = Hooks(pm, settings, report=_log_problem)
        self.backends = [backend for _, backend in self.hooks.vmm_backends()]
        self.vmm = choose_for(settings, self.backends)
        # Every reader of [firecracker] binary (launcher, doctor, plugins) sees the choice.
        settings.vmm = self.vmm
        settings.values["firecracker"]["binary"] = self.vmm.program or FIRECRACKER
        self.operations = OperationManager()
        self.server = RPCServer(self.paths.socket, group=settings.get("daemon", "socket_group"))
        self.server.error_translators.append(self._translate)
        self.policy = Policy(self._owner_of, shared_vms=bool(settings.get("daemon", "shared_vms")))
        self.server.policy = self.policy
        self.operations.error_translators.append(self._translate)
        self.started_at = time.time()
        # "banger" when the CLI started this daemon (it may replace it after an upgrade).
        self.started_by = os.environ.get("BANGER_DAEMON_STARTED_BY", "") or "other"
        self.store: Any = None
        self.services: dict[str, Any] = {}
        self.degraded: list[str] = []  # plugin services that failed to start
        self.loading_problems: list[str] = []  # misbehaving plugins seen before logging was set
        self.vms: Any = None
        self.images: Any = None
        #: what plugins get as ``daemon`` (each its own view): never this object
        self.plugin_api = PluginDaemon(
            settings, lambda: self.vms, self.paths.state_dir, vm_access=self.check_vm_access
        )

    def _translate(self, exc: BaseException) -> BangerError | None:
        """A clear error for failures with a known cause (a full state file system)."""
        from banger_core.disks import space

        if space.is_disk_full(exc):
            return space.full_error(self.paths.state_dir)
        return None

    def _owner_of(self, kind: str, ref: str) -> tuple[str, int]:
        """``(name, owner uid)`` of the VM, image or operation ``ref`` (for the policy)."""
        if kind == Access.VM:
            vm = self.vms.resolve(ref)
            return vm.name, vm.owner_uid
        if kind == Access.IMAGE:
            image = self.images.get(ref)
            return image.name, int(image.owner_uid)
        op = self.operations.get(ref)
        return f"{op.kind} {op.target} ({op.id})", op.owner_uid

    def check_vm_access(self, vm: Any, uid: int, method: str) -> None:
        """Refuse ``uid`` a VM it may not use (plugins' ``call.vm(ref)`` goes through this)."""
        self.policy.check(method, self.policy_rule_vm, {"ref": vm.id}, uid)

    policy_rule_vm = CORE_RULES["vm.show"]

    # -- core RPC methods ----------------------------------------------------
    def status(self, params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        """``daemon.status``: who is running, where, with which plugins."""
        infos = self.pm.infos.values()
        return {
            "pid": os.getpid(),
            "version": banger_core.__version__,
            "started_by": self.started_by,
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
            "services": {
                name: getattr(svc, "describe", lambda: {})() for name, svc in self.services.items()
            },
            "plugin_services": self.hooks.daemon_status(self.plugin_api),
            "vmm": self.vmm_status(),
        }

    def version(self, params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        """``daemon.version``: the quick check every CLI makes on its first call."""
        return {
            "version": banger_core.__version__,
            "pid": os.getpid(),
            "started_by": self.started_by,
            "operations": len(self.operations.running()),
        }

    def vmm_status(self) -> dict[str, Any]:
        """The VMM back-end in use: name, program, why it was chosen, version, capabilities."""
        from banger_core.firecracker.transport import vmm_version

        info: dict[str, Any] = self.vmm.as_dict()
        backend = backend_for(self.vmm.program, self.backends) if self.vmm.found else None
        info["capabilities"] = list(backend.capabilities) if backend else []
        version = vmm_version(self.vmm.program) if self.vmm.found else None
        info["version"] = ".".join(map(str, version)) if version else None
        return info

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
        return self.operations.get(params["id"]).as_dict()

    def op_cancel(self, params: dict[str, Any], call: RPCCall) -> dict[str, Any]:
        """``operation.cancel``."""
        return self.operations.cancel(params["id"]).as_dict()

    def methods(self, params: dict[str, Any], call: RPCCall) -> list[dict[str, Any]]:
        """``daemon.methods``: every RPC method, who provides it, its declared params and
        its access rule (:mod:`banger_core.daemon.policy`)."""
        return [
            {
                "name": m.name,
                "owner": m.owner,
                "params": sorted(m.schema.fields) if m.schema else None,
                "access": m.access.kind if m.access else None,
            }
            for m in sorted(self.server.methods.values(), key=lambda m: m.name)
        ]

    def register_core_methods(self) -> None:
        """Register the methods every daemon has."""
        # These answer while services still start (the CLI's autostart polls
        # daemon.status); every other method waits until start-up is done.
        op_id = Field.str(required=True, max=64)
        for name, handler in {
            "daemon.status": with_params(self.status),
            "daemon.version": with_params(self.version),
            "daemon.stop": with_params(self.stop),
            "plugins.list": with_params(self.plugins_list),
            "config.show": with_params(self.config_show),
            "operation.status": with_params(self.op_status, id=op_id),
            "operation.cancel": with_params(self.op_cancel, id=op_id),
            "daemon.methods": with_params(self.methods),
        }.items():
            self.server.register(
                name,
                handler,
                early=True,
                read=name != "daemon.stop",
                access=CORE_RULES.get(name),
            )

    def register_plugin_methods(self) -> None:
        """Register the methods plugins add; a clash is logged and skipped."""
        for plugin, name, handler in self.hooks.rpc_methods():
            try:
                self.server.register(
                    name,
                    self._plugin_handler(plugin, handler),
                    owner=f"plugin {plugin}",
                    access=access_of(handler) or PLUGIN_DEFAULT,
                )
            except Exception as exc:
                logger.error("{}", exc)

    def _plugin_handler(self, plugin: str, handler: Any) -> Any:
        """``handler`` called with the plugin's :class:`~banger_core.api.PluginCall`."""
        import functools
        import inspect

        from banger_core.api import PluginCall

        def api() -> PluginDaemon:
            return self.plugin_api.for_plugin(plugin)

        if inspect.iscoroutinefunction(handler):

            @functools.wraps(handler)
            async def run_async(params: dict[str, Any], call: RPCCall) -> Any:
                return await handler(params, PluginCall.wrap(call, plugin, api()))

            return run_async

        @functools.wraps(handler)
        def run(params: dict[str, Any], call: RPCCall) -> Any:
            return handler(params, PluginCall.wrap(call, plugin, api()))

        return run

    # -- running -----------------------------------------------------------
    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT or ``daemon.stop``."""
        from banger_core.daemon import lifecycle_methods
        from banger_core.services import build_services

        self.paths.ensure()
        self._share_with_group()
        self._lock_fd = self._take_lock()
        self._claim_socket()
        self.register_core_methods()
        lifecycle = build_services(self.settings, self.hooks)
        self.store = lifecycle.store
        self.services["network"] = lifecycle
        self.vms, self.images = lifecycle.vms, lifecycle.images
        lifecycle_methods.register(self, lifecycle.vms, lifecycle.images)
        self.register_plugin_methods()
        await self.server.start(ready=False)
        self.paths.pid_file.write_text(f"{os.getpid()}\n")
        install_signal_handlers(self.server.stop)
        for line in failure_lines(self.pm):
            logger.error("{}", line)
        for line in self.loading_problems:
            logger.warning("{}", line)
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
            # Creates and starts in progress roll back, stops and deletes finish;
            # their clients are told which before the socket goes away.
            await self.server.close(
                before_wait=lambda: self.operations.cancel_all("the daemon is stopping"),
                busy=lambda: bool(self.operations.running()),
            )
            await asyncio.to_thread(self._shutdown)
            try:
                self.paths.pid_file.unlink()
            except FileNotFoundError:
                pass
            logger.info("bangerd stopped")
        if fatal is not None:
            detail = (
                str(fatal) if isinstance(fatal, BangerError) else f"{type(fatal).__name__}: {fatal}"
            )
            raise DaemonError(f"start-up failed, bangerd stopped: {detail}") from fatal

    def _after_listen(self) -> None:
        for svc in self.services.values():
            start = getattr(svc, "start", None)
            if start:
                start()
        # A plugin's service failing does not stop the others or the daemon:
        # `banger daemon status` shows the daemon as degraded, naming it.
        for line in self.hooks.daemon_started(self.plugin_api):
            logger.error("{}", line)
            self.degraded.append(line)

    def _shutdown(self) -> None:
        for line in self.hooks.daemon_stopping(self.plugin_api):
            logger.error("{}", line)
        for svc in reversed(list(self.services.values())):
            stop = getattr(svc, "stop", None)
            if stop:
                try:
                    stop()
                except Exception:
                    logger.exception("stopping a service failed")

    def _share_with_group(self) -> None:
        """With ``[daemon] socket_group``, let its members reach the socket.

        The run directory becomes 0750 and the state directory above it (when
        it holds the run directory) 0710, both owned by the group: members can
        reach the socket but read nothing else.
        """
        import grp

        group = self.settings.get("daemon", "socket_group")
        if not group:
            return
        gid = grp.getgrnam(group).gr_gid
        run, state = self.paths.run_dir, self.paths.state_dir
        os.chown(run, -1, gid)
        os.chmod(run, 0o750)
        if state in run.parents:
            os.chown(state, -1, gid)
            os.chmod(state, 0o710)

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
            raise DaemonError(
                f"another bangerd (pid {pid}) is already running for {self.paths.state_dir}"
            ) from None
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
    loading = Hooks(pm)
    schema = loading.config_defaults()
    settings = load_settings(schema, files=config_files, paths=settings.paths)
    settings.plugin_names = tuple(pm.order)
    daemon = Daemon(settings, pm)
    daemon.loading_problems = list(loading.problems)  # logged once logging is set up
    daemon.hooks.problems.extend(loading.problems)
    return daemon
