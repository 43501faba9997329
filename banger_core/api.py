"""What plugins get of the daemon: the :class:`DaemonAPI` protocol and :class:`PluginCall`.

``banger_daemon_started(daemon)`` receives an object satisfying
:class:`DaemonAPI`; an RPC handler a plugin adds receives a
:class:`PluginCall` as its ``call`` argument. Anything else on the daemon
object is internal and may change.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import logging

    from banger_core.lifecycle.vm import VM
    from banger_core.system import Runner


@runtime_checkable
class DaemonAPI(Protocol):
    """The daemon's services a plugin may use (``bangerd`` satisfies it)."""

    settings: Any
    """The effective configuration (``settings.get(section, key)``)."""

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The effective ``[plugins.<name>]`` section."""
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
    _log: Any = field(default=None, repr=False)
    _server_call: Any = field(default=None, repr=False)

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
    def wrap(cls, call: Any, plugin: str, daemon: DaemonAPI) -> PluginCall:
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
