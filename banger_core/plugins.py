"""Finding, loading and calling plugins.

Every plugin, built-in or third party, is found through the ``banger``
entry-point group; the core never imports a plugin package by name. A plugin
that fails to import or declares hooks that do not exist is reported as one
line naming it and its entry point, and the rest keep working.

Operator switches:

- ``BANGER_PLUGINS=a,b`` loads only those plugins.
- ``BANGER_DISABLE_PLUGINS=a,b`` (and config ``[plugins] disabled``) blocks some.
- ``BANGER_TRACE_PLUGINS=1`` prints every hook call to stderr.

The rest of the core calls hooks only through :class:`Hooks`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from banger_core import hookspecs
from banger_core.errors import BangerError, PluginError
from banger_core.pluginconfig import Option

ENTRY_POINT_GROUP = "banger"


@dataclass
class PluginInfo:
    """What ``banger plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    entry_point: str
    hooks: list[str] = field(default_factory=list)
    status: str = "loaded"  # loaded | disabled | failed
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "entry_point": self.entry_point, "hooks": self.hooks, "status": self.status,
                "error": self.error}


class BangerPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers what it loaded and what failed."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    @property
    def failures(self) -> list[PluginInfo]:
        """Plugins that could not be loaded."""
        return [i for i in self.infos.values() if i.status == "failed"]

    def add_plugin(self, plugin: object, name: str, *, distribution: str = "",
                   version: str = "", entry_point: str = "") -> PluginInfo:
        """Register ``plugin`` and validate its hooks; record a failure instead of raising."""
        info = PluginInfo(name, distribution or "(in-process)", version or "",
                          entry_point or repr(plugin))
        self.infos[name] = info
        try:
            self.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            info.status, info.error = "failed", str(exc)
            return info
        try:
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            self.unregister(name=name)
            info.status, info.error = "failed", str(exc)
            return info
        info.hooks = sorted(impl_name for impl_name in _hook_names(self, plugin))
        return info


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> Iterable[str]:
    for caller in pm.get_hookcallers(plugin) or []:
        yield caller.name


def _split_env(var: str) -> set[str]:
    return {p.strip() for p in os.environ.get(var, "").split(",") if p.strip()}


def get_plugin_manager(*, load_entrypoints: bool = True, extra: Iterable[tuple[str, object]] = (),
                       disabled: Iterable[str] = ()) -> BangerPluginManager:
    """Build a plugin manager.

    :param load_entrypoints: load every plugin of the ``banger`` entry-point group.
    :param extra: ``(name, plugin)`` pairs registered in addition (tests, built-ins).
    :param disabled: plugin names not to load (config ``[plugins] disabled``).
    """
    pm = BangerPluginManager()
    blocked = set(disabled) | _split_env("BANGER_DISABLE_PLUGINS")
    only = _split_env("BANGER_PLUGINS")
    if load_entrypoints:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else ""
            where = f"{ep.name} = {ep.value}"
            if ep.name in blocked or (only and ep.name not in only):
                pm.infos[ep.name] = PluginInfo(ep.name, dist, version, where, status="disabled")
                continue
            if ep.name in pm.infos:
                pm.infos[ep.name + f" ({dist})"] = PluginInfo(
                    ep.name, dist, version, where, status="failed",
                    error=f"name {ep.name!r} is already used by {pm.infos[ep.name].distribution}")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take banger down
                pm.infos[ep.name] = PluginInfo(ep.name, dist, version, where, status="failed",
                                               error=f"{type(exc).__name__}: {exc}")
                continue
            pm.add_plugin(plugin, ep.name, distribution=dist, version=version, entry_point=where)
    for name, plugin in extra:
        if name in blocked:
            continue
        pm.add_plugin(plugin, name)
    if os.environ.get("BANGER_TRACE_PLUGINS"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


def failure_lines(pm: BangerPluginManager) -> list[str]:
    """One line per plugin that failed to load."""
    return [f"plugin {i.name!r} ({i.distribution}, entry point {i.entry_point!r}) "
            f"failed to load: {i.error}" for i in pm.failures]


class Hooks:
    """The typed facade the core uses to call plugins (nothing else touches ``pm.hook``)."""

    def __init__(self, pm: BangerPluginManager) -> None:
        self.pm = pm

    def _impls(self, hook_name: str) -> list[Any]:
        # pluggy keeps implementations LIFO; call them in registration order
        # reversed exactly as pluggy itself would.
        return list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))

    @staticmethod
    def _invoke(impl: Any, kwargs: dict[str, Any]) -> Any:
        return impl.function(**{k: kwargs[k] for k in impl.argnames if k in kwargs})

    def _call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation separately, so results carry the plugin name."""
        return [(impl.plugin_name, self._invoke(impl, kwargs)) for impl in self._impls(hook_name)]

    # -- loading ---------------------------------------------------------
    def config_defaults(self) -> dict[str, dict[str, Option]]:
        """``{plugin name: {key: Option}}`` from ``banger_config_defaults``."""
        schema: dict[str, dict[str, Option]] = {}
        for name, result in self._call_each("banger_config_defaults"):
            if result:
                schema[name] = dict(result)
        return schema

    def cli_commands(self) -> list[tuple[str, Any]]:
        """``(plugin name, click command)`` pairs from ``banger_cli_commands``."""
        out = []
        for name, result in self._call_each("banger_cli_commands"):
            for command in result or []:
                out.append((name, command))
        return out

    def cli_subcommands(self) -> list[tuple[str, str, Any]]:
        """``(plugin name, group path, click command)`` from ``banger_cli_subcommands``."""
        out = []
        for name, result in self._call_each("banger_cli_subcommands"):
            for group, commands in (result or {}).items():
                for command in commands or []:
                    out.append((name, str(group), command))
        return out

    # -- daemon ----------------------------------------------------------
    def rpc_methods(self) -> list[tuple[str, str, Any]]:
        """``(plugin name, method name, handler)`` triples."""
        out = []
        for name, result in self._call_each("banger_rpc_methods"):
            for method, handler in (result or {}).items():
                out.append((name, method, handler))
        return out

    def daemon_started(self, daemon: Any) -> None:
        """Tell plugins the daemon is up."""
        self.pm.hook.banger_daemon_started(daemon=daemon)

    def daemon_stopping(self, daemon: Any) -> list[str]:
        """Tell every plugin the daemon stops; return failures (never raise)."""
        return self.teardown("banger_daemon_stopping", daemon=daemon)

    def doctor_checks(self, ctx: Any) -> list[tuple[str, Any]]:
        """``(plugin name, Check)`` pairs."""
        out = []
        for name, result in self._call_each("banger_doctor_checks", ctx=ctx):
            for check in result or []:
                out.append((name, check))
        return out

    # -- lifecycle ---------------------------------------------------------
    def vm_validate(self, spec: Any) -> None:
        """Let plugins reject a create or set request."""
        self.pm.hook.banger_vm_validate(spec=spec)

    def vm_create(self, vm: Any, ctx: Any) -> None:
        """Let plugins allocate persistent per-VM resources."""
        self.pm.hook.banger_vm_create(vm=vm, ctx=ctx)

    def vm_configure(self, vm: Any, machine: Any, guest: Any) -> None:
        """Let plugins add to the machine spec and guest config for a boot."""
        self.pm.hook.banger_vm_configure(vm=vm, machine=machine, guest=guest)

    def vm_set(self, vm: Any, changes: dict[str, Any], ctx: Any) -> None:
        """Let plugins apply a change to a stopped VM."""
        self.pm.hook.banger_vm_set(vm=vm, changes=changes, ctx=ctx)

    def vm_started(self, vm: Any) -> None:
        """Let plugins publish a running VM."""
        self.pm.hook.banger_vm_started(vm=vm)

    def vm_ready_checks(self, vm: Any, ctx: Any) -> list[tuple[str, Any]]:
        """``(plugin name, ReadyCheck)`` pairs, in plugin order."""
        out = []
        for name, result in self._call_each("banger_vm_ready_checks", vm=vm, ctx=ctx):
            for check in result or []:
                out.append((name, check))
        return out

    def vm_dns_names(self, vm: Any) -> list[str]:
        """Every DNS name plugins publish for ``vm`` (deduplicated, in plugin order)."""
        names: list[str] = []
        for _name, result in self._call_each("banger_vm_dns_names", vm=vm):
            for item in result or []:
                if isinstance(item, str) and item and item not in names:
                    names.append(item)
        return names

    def vm_stopped(self, vm: Any) -> list[str]:
        """Release runtime state in every plugin; return failures as lines."""
        return self.teardown("banger_vm_stopped", vm=vm)

    def vm_deleted(self, vm: Any) -> list[str]:
        """Remove persistent state in every plugin; return failures as lines."""
        return self.teardown("banger_vm_deleted", vm=vm)

    def reconcile(self, vms: list[Any]) -> list[str]:
        """Let every plugin reconcile; return failures as lines."""
        return self.teardown("banger_reconcile", vms=vms)

    def guest_os(self) -> list[Any]:
        """Every guest OS provider."""
        return [item for _, result in self._call_each("banger_guest_os") for item in result or []]

    def image_provision(self, image: Any, steps: list[Any]) -> None:
        """Let plugins add provisioning steps."""
        self.pm.hook.banger_image_provision(image=image, steps=steps)

    def teardown(self, hook_name: str, **kwargs: Any) -> list[str]:
        """Call each implementation on its own; collect failures with the plugin name."""
        failures = []
        for impl in self._impls(hook_name):
            try:
                self._invoke(impl, kwargs)
            except Exception as exc:
                detail = (str(exc) if isinstance(exc, BangerError)
                          else f"{type(exc).__name__}: {exc}")
                failures.append(f"plugin {impl.plugin_name}: {hook_name}: {detail}")
        return failures


def raise_failures(failures: list[str], what: str) -> None:
    """Raise one error listing every teardown failure, if there were any."""
    if failures:
        raise PluginError(f"{what}: " + "; ".join(failures))
