"""What plugins get of the daemon: the :class:`DaemonAPI` protocol and :class:`PluginCall`.

``banger_daemon_started(daemon)`` (and ``_stopping``, ``_status``) receives
a :class:`PluginDaemon`, the narrow object satisfying :class:`DaemonAPI`
(never the daemon itself); an RPC handler a plugin adds receives a
:class:`PluginCall` as its ``call`` argument, whose ``call.daemon`` is the
same narrow object.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import logging

    from banger_core.config import Settings
    from banger_core.lifecycle.vm import VM
    from banger_core.system import Runner


@runtime_checkable
class DaemonAPI(Protocol):
    """The daemon's services a plugin may use (:class:`PluginDaemon` is what plugins get)."""

    @property
    def settings(self) -> Settings:
        """The effective configuration (``settings.get(section, key)``)."""
        ...

    @property
    def config(self) -> Mapping[str, Any]:
        """The receiving plugin's own ``[plugins.<name>]`` section."""
        ...

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The effective ``[plugins.<name>]`` section.

        :raise banger_core.NotFoundError: no plugin is called ``name``.
        """
        ...

    def vm(self, ref: str) -> VM:
        """A VM by name, id or unique id prefix.

        :raise banger_core.NotFoundError: no such VM.
        :raise banger_core.ConflictError: the prefix matches several VMs.
        """
        ...

    def list_vms(self) -> list[VM]:
        """Every VM the store knows, by name."""
        ...

    def save_plugin_state(self, vm: VM, name: str) -> None:
        """Store ``vm.plugin_state(name)`` after an RPC handler changed it."""
        ...

    @property
    def state_dir(self) -> Path:
        """banger's state directory (``/var/lib/banger``); keep plugin files under it."""
        ...

    @property
    def runner(self) -> Runner:
        """Runs external programs (:func:`banger_core.run`)."""
        ...


class VMSource(Protocol):
    """Where a :class:`PluginDaemon` finds VMs (the daemon's VM manager)."""

    def resolve(self, ref: str) -> VM:
        """A VM by name, id or unique id prefix."""
        ...

    def all(self) -> list[VM]:
        """Every VM, by name."""
        ...

    def save_plugin_state(self, vm: VM, name: str) -> None:
        """Store one plugin's state of ``vm``."""
        ...


class PluginDaemon:
    """The narrow object plugins get as ``daemon``: :class:`DaemonAPI` and nothing more.

    Built by the daemon from its collaborators (settings, the VM manager,
    the state directory), never the daemon itself; each plugin gets its own
    view (:meth:`for_plugin`) whose :attr:`config` is its own section.

    :param vms: returns the VM manager (``None`` while the daemon starts:
        VM lookups then say so).
    :param vm_access: ``check(vm, uid, method)``: the daemon's access rule
        for a VM a plugin's RPC handler resolves for a caller.
    """

    def __init__(
        self,
        settings: Settings,
        vms: Callable[[], VMSource | None],
        state_dir: Path,
        *,
        plugin_name: str = "",
        vm_access: Callable[[VM, int, str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._vms = vms
        self._state_dir = Path(state_dir)
        self.plugin_name = plugin_name
        self._vm_access = vm_access

    def for_plugin(self, name: str) -> PluginDaemon:
        """Plugin ``name``'s view (its :attr:`config`)."""
        return PluginDaemon(
            self._settings, self._vms, self._state_dir, plugin_name=name, vm_access=self._vm_access
        )

    @property
    def settings(self) -> Settings:
        """The effective configuration (``settings.get(section, key)``)."""
        return self._settings

    @property
    def config(self) -> Mapping[str, Any]:
        """The receiving plugin's own ``[plugins.<name>]`` section."""
        from banger_core.hookcontext import plugin_section

        if not self.plugin_name:
            return {}
        return plugin_section(self._settings, self.plugin_name, own=True)

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The effective ``[plugins.<name>]`` section (prefer :attr:`config` for your own).

        :raise banger_core.NotFoundError: no plugin is called ``name``.
        """
        from banger_core.hookcontext import plugin_section

        return plugin_section(self._settings, name, own=name == self.plugin_name)

    def _source(self) -> VMSource:
        vms = self._vms()
        if vms is None:
            from banger_core.errors import DaemonError

            raise DaemonError("bangerd is still starting: VMs are not available yet")
        return vms

    def vm(self, ref: str) -> VM:
        """A VM by name, id or unique id prefix.

        :raise banger_core.NotFoundError: no such VM.
        :raise banger_core.ConflictError: the prefix matches several VMs.
        """
        return self._source().resolve(ref)

    def list_vms(self) -> list[VM]:
        """Every VM the store knows, by name."""
        return self._source().all()

    def save_plugin_state(self, vm: VM, name: str) -> None:
        """Store ``vm.plugin_state(name)`` after an RPC handler changed it."""
        self._source().save_plugin_state(vm, name)

    def check_vm_access(self, vm: VM, uid: int, method: str) -> None:
        """Refuse ``uid`` a VM it may not use (``call.vm(ref)`` asks this)."""
        if self._vm_access is not None:
            self._vm_access(vm, uid, method)

    @property
    def state_dir(self) -> Path:
        """banger's state directory (``/var/lib/banger``); keep plugin files under it."""
        return self._state_dir

    @property
    def runner(self) -> Runner:
        """Runs external programs (:func:`banger_core.run`)."""
        from banger_core import system

        return system.run


class ServerCall(Protocol):
    """The daemon's own view of a request, which :meth:`PluginCall.wrap` wraps."""

    method: str
    peer_pid: int
    peer_uid: int
    peer_gid: int
    cancelled: threading.Event

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Run another method for the same peer (its result is whatever that method returns)."""
        ...


@dataclass(eq=False)
class PluginCall:
    """The ``call`` a plugin's RPC handler gets.

    ``method``, ``peer_pid``, ``peer_uid``, ``peer_gid`` describe the request;
    ``cancelled`` is a :class:`threading.Event` set when the client went away
    (poll it in long handlers).
    """

    method: str
    peer_pid: int
    peer_uid: int
    peer_gid: int
    cancelled: threading.Event
    plugin_name: str
    daemon: DaemonAPI
    _log: logging.LoggerAdapter[logging.Logger] | None = field(default=None, repr=False)
    _server_call: ServerCall | None = field(default=None, repr=False)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Run another RPC method of the daemon (core or plugin) for the same peer.

        For sync handlers. How plugins use each other without importing
        each other (``call.call("vm.agent", {"ref": "web", "path": "/ports"})``).

        :raise banger_core.UnknownMethodError: no such method (a
            :class:`banger_core.NotFoundError`; a missing VM is a plain
            ``NotFoundError``).
        """
        if self._server_call is None:
            from banger_core.errors import UnknownMethodError

            raise UnknownMethodError(f"unknown method {method!r}")
        return self._server_call.call(method, params)

    @property
    def config(self) -> Mapping[str, Any]:
        """The plugin's effective ``[plugins.<name>]`` section."""
        return self.daemon.plugin_config(self.plugin_name)

    def vm(self, ref: str) -> VM:
        """A VM by name, id or unique id prefix (errors as the core gives them).

        :raise banger_core.ForbiddenError: the caller (a ``socket_group``
            member) may not use that VM: it is another member's and VMs are
            not shared. Resolve VMs through this, not ``call.daemon.vm``.
        """
        vm = self.daemon.vm(ref)
        check = getattr(self.daemon, "check_vm_access", None)
        if check is not None:
            check(vm, self.peer_uid, self.method)
        return vm

    @property
    def runner(self) -> Runner:
        """Runs external programs."""
        return self.daemon.runner

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger bound to the plugin."""
        from banger_core.hookcontext import plugin_logger

        if self._log is None:
            self._log = plugin_logger(self.plugin_name)
        log: logging.LoggerAdapter[logging.Logger] = self._log
        return log

    @classmethod
    def wrap(cls, call: ServerCall, plugin: str, daemon: DaemonAPI) -> PluginCall:
        """The plugin's view of the server's call object."""
        return cls(
            method=call.method,
            peer_pid=call.peer_pid,
            peer_uid=call.peer_uid,
            peer_gid=call.peer_gid,
            cancelled=call.cancelled,
            plugin_name=plugin,
            daemon=daemon,
            _server_call=call,
        )


#: The name plugins use for the handler's ``call`` argument type.
RPCCall = PluginCall
