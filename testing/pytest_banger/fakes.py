"""Unit-test helpers for plugin hooks: a fake VM, a fake context and a recording runner.

They are the real types (:class:`banger_core.VM`,
:class:`banger_core.LifecycleContext`) filled with test values, so a hook
is tested in milliseconds without a daemon::

    from pytest_banger import fake_context, fake_vm

    def test_create_registers_an_undo(tmp_path):
        vm = fake_vm("box", tmp_path, options={"scratch": {"scratch_size": 1 << 30}})
        ctx = fake_context("scratch", {"mount_point": "/scratch"})
        my_plugin.banger_vm_create(vm=vm, ctx=ctx)
        assert ctx.undo_descriptions() == ["plugin scratch: remove scratch disk"]
        assert ctx.rollback() == []
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from banger_core.errors import CommandError
from banger_core.hookcontext import LifecycleContext
from banger_core.lifecycle.vm import VM, ImageInfo
from banger_core.system import Result

if TYPE_CHECKING:
    from banger_core.config import Settings


@dataclass
class FakeRunner:
    """Records every command instead of running it; answers from ``responses``.

    ``responses`` maps a program name (``argv[0]``) to a :class:`Result`, or to
    a callable ``fn(argv) -> Result``. Unlisted programs succeed with no
    output. ``runner.calls`` holds every argv. Pass ``passthrough=True`` to
    run unlisted programs for real through :func:`banger_core.run`.
    """

    responses: dict[str, Any] = field(default_factory=dict)
    passthrough: bool = False
    calls: list[list[str]] = field(default_factory=list)

    def __call__(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """Record ``argv`` and return the scripted result (raising like the real one)."""
        args = [str(a) for a in argv]
        self.calls.append(args)
        answer = self.responses.get(args[0])
        if answer is None and self.passthrough:
            from banger_core import system

            kwargs: dict[str, Any] = {"check": check, "input": input, "env": env}
            if timeout is not None:
                kwargs["timeout"] = timeout
            return system.run(args, **kwargs)
        result = answer(args) if callable(answer) else answer or Result(args, 0, "", "")
        if check and result.returncode != 0:
            raise CommandError(args, result.returncode, result.stderr)
        return result

    def programs(self) -> list[str]:
        """The program of each recorded call, in order."""
        return [argv[0] for argv in self.calls]


class _Settings:
    """The bit of the daemon's settings a context reads."""

    def __init__(self, plugins: dict[str, dict[str, Any]], paths: Any = None) -> None:
        self._plugins = plugins
        self.paths = paths

    def plugin(self, name: str) -> dict[str, Any]:
        return dict(self._plugins.get(name, {}))

    def get(self, section: str, key: str) -> Any:
        raise KeyError(f"fake settings have no [{section}] {key}")


class FakeContext(LifecycleContext):
    """A :class:`LifecycleContext` for one plugin, with a few assertions helpers."""

    def undo_descriptions(self) -> list[str]:
        """The descriptions of the undos registered so far, in order."""
        return [u.description for u in self.undos]


def fake_context(
    plugin: str = "test",
    config: Mapping[str, Any] | None = None,
    *,
    runner: Callable[..., Result] | None = None,
    other_plugins: Mapping[str, Mapping[str, Any]] | None = None,
    can_undo: bool = True,
    hook: str = "",
) -> FakeContext:
    """A context as plugin ``plugin``'s hooks get it.

    :param config: the plugin's ``[plugins.<name>]`` values (``ctx.config``).
    :param runner: defaults to a :class:`FakeRunner` (``ctx.runner.calls``).
    :param can_undo: False gives a teardown hook's context (``add_undo`` refuses).
    """
    plugins = {k: dict(v) for k, v in (other_plugins or {}).items()}
    plugins[plugin] = dict(config or {})
    return FakeContext(
        settings=_Settings(plugins),
        runner=runner or FakeRunner(),
        plugin_name=plugin,
        can_undo=can_undo,
        hook=hook,
    )


def fake_vm(
    name: str = "box",
    directory: Path | str | None = None,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    option_defaults: Mapping[str, Mapping[str, Any]] | None = None,
    plugin_states: Mapping[str, Mapping[str, Any]] | None = None,
    image_artifacts: Mapping[str, str] | None = None,
    **fields: Any,
) -> VM:
    """A :class:`banger_core.VM` for unit tests.

    :param directory: the VM's directory (``vm.dir``; created); a path under
        ``/nonexistent`` when omitted.
    :param options: stored per-VM option values, ``{plugin: {key: value}}``.
    :param option_defaults: declared defaults, ``{plugin: {key: value}}``.
    :param fields: any other :class:`VM` field (``state="running"``, ``cpus=4``).
    """
    base = Path(directory) if directory is not None else Path("/nonexistent") / name
    if directory is not None:
        base.mkdir(parents=True, exist_ok=True)
    states = {k: dict(v) for k, v in (plugin_states or {}).items()}
    if options:
        states.setdefault("core", {})["options"] = {k: dict(v) for k, v in options.items()}
    values: dict[str, Any] = {
        "id": f"{abs(hash(name)) % (1 << 48):012x}",
        "name": name,
        "image": ImageInfo(
            "img0",
            "debian",
            "/images/vmlinuz",
            "/images/rootfs.ext4",
            artifacts=dict(image_artifacts or {}),
        ),
        "cpus": 2,
        "memory_mib": 1024,
        "disk_size": 0,
        "state": "stopped",
        "ip": "172.30.0.2",
        "mac": "06:00:ac:1e:00:02",
        "gateway": "172.30.0.1",
        "prefixlen": 24,
        "dir": base,
        "run_dir": base / "run",
        "plugin_states": states,
        "option_defaults": {k: dict(v) for k, v in (option_defaults or {}).items()},
    }
    values.update(fields)
    return VM(**values)


class FakeDaemon:
    """A :class:`banger_core.DaemonAPI` over a few fake VMs, for RPC-handler tests."""

    def __init__(
        self,
        vms: Sequence[VM] = (),
        plugins: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        state_dir: Path | str = "/nonexistent/state",
        runner: Callable[..., Result] | None = None,
        plugin: str = "test",
    ) -> None:
        self._settings = _Settings({k: dict(v) for k, v in (plugins or {}).items()})
        self.plugin = plugin
        """The plugin this daemon view is for (``daemon.config`` is its section)."""
        self.vms = list(vms)
        self.saved: list[tuple[str, str]] = []
        """``(vm name, plugin)`` for every :meth:`save_plugin_state` call."""
        self._state_dir = Path(state_dir)
        self._runner = runner or FakeRunner()

    @property
    def settings(self) -> Settings:
        """Fake settings: only the plugins' sections (``settings.plugin(name)``)."""
        return cast("Settings", self._settings)

    @property
    def config(self) -> Mapping[str, Any]:
        """The section of the plugin this view is for."""
        return self._settings.plugin(self.plugin)

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The plugin's section as given."""
        return self._settings.plugin(name)

    def vm(self, ref: str) -> VM:
        """A VM by name, id or unique id prefix; errors as the daemon gives them."""
        from banger_core.errors import ConflictError, NotFoundError

        for vm in self.vms:
            if ref in (vm.name, vm.id):
                return vm
        matches = [vm for vm in self.vms if ref and vm.id.startswith(ref)]
        if len(matches) > 1:
            names = ", ".join(vm.name for vm in matches)
            raise ConflictError(f"VM id prefix {ref!r} is ambiguous: {names}")
        if not matches:
            raise NotFoundError(f"no VM {ref!r}")
        return matches[0]

    def list_vms(self) -> list[VM]:
        """The fake VMs, by name."""
        return sorted(self.vms, key=lambda vm: vm.name)

    def save_plugin_state(self, vm: VM, name: str) -> None:
        """Record the call (``daemon.saved``)."""
        self.saved.append((vm.name, name))

    @property
    def state_dir(self) -> Path:
        """The state directory given."""
        return self._state_dir

    @property
    def runner(self) -> Callable[..., Result]:
        """A :class:`FakeRunner` unless one was given."""
        return self._runner


def FakeRPCCall(
    plugin: str = "test",
    config: Mapping[str, Any] | None = None,
    *,
    vms: Sequence[VM] = (),
    methods: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
    method: str = "test.call",
    peer_uid: int = 0,
    runner: Callable[..., Result] | None = None,
) -> Any:
    """The ``call`` an RPC handler of plugin ``plugin`` gets, without a daemon.

    It is a real :class:`banger_core.PluginCall`: ``call.config`` is ``config``,
    ``call.vm(ref)`` finds one of ``vms`` (``NotFoundError``/``ConflictError``
    as the daemon raises them), ``call.call(name, params)`` runs
    ``methods[name](params)`` (``UnknownMethodError`` for any other name, as
    the daemon raises it), ``call.runner`` is a :class:`FakeRunner` unless given,
    ``call.cancelled`` an unset event, and ``call.daemon.saved`` records
    ``save_plugin_state`` calls::

        call = FakeRPCCall("ports", {"scan": True}, vms=[fake_vm("web")],
                           methods={"vm.agent": lambda p: {"ports": []}})
        assert my_handler({"ref": "web"}, call) == []
    """
    import threading

    from banger_core.api import PluginCall

    handlers = dict(methods or {})
    cancelled = threading.Event()

    class _Server:
        """The daemon's side of the request (a ``banger_core.api.ServerCall``)."""

        def __init__(self) -> None:
            self.method = method
            self.peer_pid = os.getpid()
            self.peer_uid = peer_uid
            self.peer_gid = 0
            self.cancelled = cancelled

        def call(self, name: str, params: dict[str, Any] | None = None) -> Any:
            from banger_core.errors import UnknownMethodError

            if name not in handlers:
                raise UnknownMethodError(f"unknown method {name!r}")
            return handlers[name](dict(params or {}))

    daemon = FakeDaemon(vms, {plugin: dict(config or {})}, runner=runner, plugin=plugin)
    return PluginCall(
        method=method,
        peer_pid=os.getpid(),
        peer_uid=peer_uid,
        peer_gid=0,
        cancelled=cancelled,
        plugin_name=plugin,
        daemon=daemon,
        _server_call=_Server(),
    )
