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
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from banger_core import hookspecs
from banger_core.errors import BangerError, PluginError, plugin_error
from banger_core.pluginconfig import Option

if TYPE_CHECKING:
    import click

    from banger_core.api import DaemonAPI
    from banger_core.config import Settings
    from banger_core.doctor import Check, DoctorContext
    from banger_core.guestconfig import GuestConfig
    from banger_core.hookcontext import LifecycleContext
    from banger_core.hookspecs import RPCHandler
    from banger_core.images.providers import GuestOS, ProvisionStep
    from banger_core.lifecycle.machine import MachineSpec
    from banger_core.lifecycle.ready import ReadyCheck
    from banger_core.lifecycle.vm import VM, VMSpec
    from banger_core.vmmbackends import VMMBackend
    from banger_core.vmoptions import DeclaredOption

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
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "hooks": self.hooks,
            "status": self.status,
            "error": self.error,
        }


class BangerPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers what it loaded and what failed."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.order: list[str] = []  # registration order: the order setup hooks run in

    @property
    def failures(self) -> list[PluginInfo]:
        """Plugins that could not be loaded."""
        return [i for i in self.infos.values() if i.status == "failed"]

    def add_plugin(
        self,
        plugin: object,
        name: str,
        *,
        distribution: str = "",
        version: str = "",
        entry_point: str = "",
    ) -> PluginInfo:
        """Register ``plugin`` and validate its hooks; record a failure instead of raising."""
        info = PluginInfo(
            name, distribution or "(in-process)", version or "", entry_point or repr(plugin)
        )
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
        self.order.append(name)
        return info


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> Iterable[str]:
    for caller in pm.get_hookcallers(plugin) or []:
        yield caller.name


def _split_env(var: str) -> set[str]:
    return {p.strip() for p in os.environ.get(var, "").split(",") if p.strip()}


def get_plugin_manager(
    *,
    load_entrypoints: bool = True,
    extra: Iterable[tuple[str, object]] = (),
    disabled: Iterable[str] = (),
) -> BangerPluginManager:
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
                    ep.name,
                    dist,
                    version,
                    where,
                    status="failed",
                    error=f"name {ep.name!r} is already used by {pm.infos[ep.name].distribution}",
                )
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take banger down
                pm.infos[ep.name] = PluginInfo(
                    ep.name,
                    dist,
                    version,
                    where,
                    status="failed",
                    error=f"{type(exc).__name__}: {exc}",
                )
                continue
            info = pm.add_plugin(
                plugin, ep.name, distribution=dist, version=version, entry_point=where
            )
            if info.status == "loaded":
                warn_deprecated_imports(ep.name, plugin)
    for name, plugin in extra:
        if name in blocked:
            continue
        pm.add_plugin(plugin, name)
    if os.environ.get("BANGER_TRACE_PLUGINS"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


#: module paths the first plugin guide named; they keep working through this release
DEPRECATED_PATHS = (
    "banger_core.errors",
    "banger_core.pluginconfig",
    "banger_core.doctor",
    "banger_core.cli.context",
    "banger_core.cli.output",
    "banger_core.lifecycle.context",
    "banger_core.hookspecs",
)
_OLD_IMPORT = re.compile(
    r"^\s*(?:from\s+(banger_core(?:\.\w+)+)\s+import|import\s+"
    r"(banger_core(?:\.\w+)+))",
    re.MULTILINE,
)


def warn_deprecated_imports(name: str, plugin: object) -> list[str]:
    """Warn (``DeprecationWarning``) where a plugin imports a path the old guide named.

    Reads the plugin's own source files (its module, or its package's
    top-level modules) once at load; the imports keep working. Returns the
    warnings' texts.
    """
    import warnings

    path = getattr(plugin, "__file__", None)
    if not path:
        return []
    base = Path(path)
    files = sorted(base.parent.glob("*.py")) if base.name == "__init__.py" else [base]
    found = []
    for file in files:
        try:
            text = file.read_text(errors="replace")
        except OSError:
            continue
        for match in _OLD_IMPORT.finditer(text):
            module = match.group(1) or match.group(2)
            if module in DEPRECATED_PATHS:
                line = text.count("\n", 0, match.start()) + 1
                found.append(
                    f"plugin {name}: {file.name}:{line} imports {module}; import "
                    "from banger_core itself (the old path works through this "
                    "release)"
                )
    for message in found:
        warnings.warn(message, DeprecationWarning, stacklevel=2)
    return found


def failure_lines(pm: BangerPluginManager) -> list[str]:
    """One line per plugin that failed to load."""
    return [
        f"plugin {i.name!r} ({i.distribution}, entry point {i.entry_point!r}) "
        f"failed to load: {i.error}"
        for i in pm.failures
    ]


_WRAPPER_ATTRS = ("hookwrapper", "wrapper")

#: problems a :class:`Hooks` keeps (a daemon reports the same problem once)
MAX_PROBLEMS = 200


def _is_wrapper(impl: pluggy.HookImpl) -> bool:
    return any(getattr(impl, attr, False) for attr in _WRAPPER_ATTRS)


named_error = plugin_error
_named = plugin_error  # the names the image builder used before


def _detail(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, BangerError) else f"{type(exc).__name__}: {exc}"


def problem_line(plugin: str, hook: str, what: str) -> str:
    """The one line that reports a misbehaving plugin: ``plugin NAME: HOOK: what``."""
    return f"plugin {plugin}: {hook}: {what}"


class Hooks:
    """The typed facade the core uses to call plugins (nothing else touches ``pm.hook``).

    Every call goes through pluggy's own machinery, one plugin at a time:
    for each plugin's implementation the facade builds a pluggy subset
    caller holding that implementation plus every wrapper
    (``wrapper=True`` / ``hookwrapper=True``) of the hook, so wrappers run
    around each call, ``BANGER_TRACE_PLUGINS`` traces it, and results and
    errors carry the plugin's name.

    Every result is checked here, in :meth:`call_one`, against the
    hookspec's return annotation (:func:`banger_core.hookcheck.conform`); a
    wrong result and an exception become one line naming the plugin, the
    hook and what was wrong, kept in :attr:`problems` and passed to
    ``report`` (the daemon logs it, the CLI prints it as a warning). What
    happens next is the hook's :data:`banger_core.hookspecs.ON_FAILURE`
    policy: ``abort`` hooks raise (the operation rolls back), ``skip`` hooks
    drop that plugin's contribution, ``isolate`` hooks call every plugin and
    return the failures.

    Order: setup hooks call plugins ``tryfirst`` ones first, then the rest,
    then ``trylast`` ones; within each group in registration order, which is
    the alphabetical order of entry-point names (then in-process plugins in
    the order given). Teardown hooks (``banger_vm_stopped``,
    ``banger_vm_deleted``, ``banger_reconcile``, ``banger_daemon_stopping``)
    run in exactly the reverse order.
    """

    #: hooks that get a per-plugin :class:`LifecycleContext` as ``ctx``
    CTX_HOOKS = frozenset(
        {
            "banger_vm_validate",
            "banger_vm_create",
            "banger_vm_configure",
            "banger_vm_set",
            "banger_vm_started",
            "banger_vm_stopped",
            "banger_vm_deleted",
            "banger_reconcile",
            "banger_vm_ready_checks",
        }
    )

    def __init__(
        self,
        pm: BangerPluginManager,
        settings: Settings | None = None,
        *,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.pm = pm
        self.settings = settings
        self.report = report
        #: one line per misbehaviour seen (wrong results, failed collecting hooks)
        self.problems: list[str] = []

    # -- calling machinery -------------------------------------------------------
    def impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        """The non-wrapper implementations of a hook, in setup (call) order."""
        caller = getattr(self.pm.hook, hook_name)
        order = {name: index for index, name in enumerate(self.pm.order)}

        def rank(impl: pluggy.HookImpl) -> tuple[int, int]:
            group = 0 if impl.tryfirst else 2 if impl.trylast else 1
            return group, order.get(impl.plugin_name, len(order))

        return sorted((i for i in caller.get_hookimpls() if not _is_wrapper(i)), key=rank)

    def note(self, plugin: str, hook: str, what: str) -> str:
        """Record (once) and report one problem line; return it."""
        return self.record(problem_line(plugin, hook, what))

    def record(self, line: str) -> str:
        """Keep and report ``line`` unless it was seen before; return it."""
        if line not in self.problems:
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(line)
            if self.report is not None:
                self.report(line)
        return line

    def checked_call(
        self, hook_name: str, impl: pluggy.HookImpl, kwargs: dict[str, object]
    ) -> tuple[Any, list[str]]:
        """One plugin's result, reduced to the declared type, and its problems (not reported).

        Exceptions propagate. ``Any``: the result's type is the hookspec's,
        which differs per hook (each facade method names it).
        """
        from banger_core.hookcheck import conform

        caller = getattr(self.pm.hook, hook_name)
        others = [i.plugin for i in caller.get_hookimpls() if i is not impl and not _is_wrapper(i)]
        results = self.pm.subset_hook_caller(hook_name, others)(**kwargs)
        return conform(hook_name, results[0] if results else None)

    def call_one(self, hook_name: str, impl: pluggy.HookImpl, kwargs: dict[str, object]) -> Any:
        """Call one plugin's implementation through pluggy, wrappers included; check the result.

        A result of the wrong type is reported (naming the plugin and the
        hook) and reduced to what is declared (``None`` when nothing is left).
        """
        result, problems = self.checked_call(hook_name, impl, kwargs)
        for what in problems:
            self.note(impl.plugin_name, hook_name, what)
        return result

    def _kwargs(
        self,
        hook_name: str,
        impl: pluggy.HookImpl,
        kwargs: dict[str, object],
        ctx: LifecycleContext | None,
    ) -> dict[str, object]:
        daemon = kwargs.get("daemon")
        if daemon is not None and hasattr(daemon, "for_plugin"):
            kwargs = {**kwargs, "daemon": daemon.for_plugin(impl.plugin_name)}
        if hook_name not in self.CTX_HOOKS:
            return kwargs
        from banger_core.hookcontext import LifecycleContext

        base = ctx if ctx is not None else LifecycleContext(self.settings, can_undo=False)
        return {**kwargs, "ctx": base.for_plugin(impl.plugin_name, hook_name)}

    def each(
        self, hook_name: str, *, ctx: LifecycleContext | None = None, **kwargs: object
    ) -> list[tuple[str, Any]]:
        """``abort`` hooks: every plugin in setup order; the first failure is raised, named."""
        out = []
        for impl in self.impls(hook_name):
            try:
                result = self.call_one(hook_name, impl, self._kwargs(hook_name, impl, kwargs, ctx))
            except BaseException as exc:
                named = plugin_error(exc, impl.plugin_name, hook_name)
                if named is exc:
                    raise
                raise named from exc
            out.append((impl.plugin_name, result))
        return out

    def collect(self, hook_name: str, **kwargs: object) -> list[tuple[str, Any]]:
        """``skip`` hooks: every plugin in setup order; a failing plugin is reported and skipped."""
        out = []
        for impl in self.impls(hook_name):
            try:
                result = self.call_one(hook_name, impl, kwargs)
            except Exception as exc:
                self.note(impl.plugin_name, hook_name, _detail(exc))
                continue
            if result is not None:
                out.append((impl.plugin_name, result))
        return out

    def teardown(
        self, hook_name: str, *, ctx: LifecycleContext | None = None, **kwargs: object
    ) -> list[str]:
        """``isolate`` hooks, in reverse setup order; return the failures, one line each."""
        return self._isolated(reversed(self.impls(hook_name)), hook_name, ctx, kwargs)

    def isolated(
        self, hook_name: str, *, ctx: LifecycleContext | None = None, **kwargs: object
    ) -> list[str]:
        """``isolate`` hooks in setup order: one failure never stops the others."""
        return self._isolated(self.impls(hook_name), hook_name, ctx, kwargs)

    def _isolated(
        self,
        impls: Iterable[pluggy.HookImpl],
        hook_name: str,
        ctx: LifecycleContext | None,
        kwargs: dict[str, object],
    ) -> list[str]:
        failures = []
        for impl in impls:
            try:
                self.call_one(hook_name, impl, self._kwargs(hook_name, impl, kwargs, ctx))
            except Exception as exc:
                failures.append(problem_line(impl.plugin_name, hook_name, _detail(exc)))
        return failures

    # -- loading ---------------------------------------------------------
    def config_defaults(self) -> dict[str, dict[str, Option]]:
        """``{plugin name: {key: Option}}`` from ``banger_config_defaults``."""
        schema: dict[str, dict[str, Option]] = {}
        for name, result in self.collect("banger_config_defaults"):
            if result:
                schema[name] = dict(result)
        return schema

    def cli_commands(self) -> list[tuple[str, click.Command]]:
        """``(plugin name, click command)`` pairs from ``banger_cli_commands``."""
        return [
            (name, command)
            for name, result in self.collect("banger_cli_commands")
            for command in result
        ]

    def cli_subcommands(self) -> list[tuple[str, str, click.Command]]:
        """``(plugin name, group path, click command)`` from ``banger_cli_subcommands``."""
        return [
            (name, group, command)
            for name, result in self.collect("banger_cli_subcommands")
            for group, commands in result.items()
            for command in commands
        ]

    def vm_options(self) -> list[DeclaredOption]:
        """Every :class:`~banger_core.vmoptions.DeclaredOption`, in plugin order."""
        from banger_core.vmoptions import DeclaredOption

        return [
            DeclaredOption(name, option)
            for name, result in self.collect("banger_vm_options")
            for option in result
        ]

    # -- daemon ----------------------------------------------------------
    def rpc_methods(self) -> list[tuple[str, str, RPCHandler]]:
        """``(plugin name, method name, handler)`` triples."""
        return [
            (name, method, handler)
            for name, result in self.collect("banger_rpc_methods")
            for method, handler in result.items()
        ]

    def daemon_started(self, daemon: DaemonAPI) -> list[str]:
        """Tell plugins the daemon is up; return failures (one per plugin, never raise)."""
        return self.isolated("banger_daemon_started", daemon=daemon)

    def daemon_stopping(self, daemon: DaemonAPI) -> list[str]:
        """Tell every plugin the daemon stops; return failures (never raise)."""
        return self.teardown("banger_daemon_stopping", daemon=daemon)

    def daemon_status(self, daemon: DaemonAPI) -> dict[str, dict[str, object]]:
        """``{plugin name: status mapping}`` from ``banger_daemon_status``.

        A plugin that raises or returns something else than a mapping shows
        ``{"error": ...}`` instead: status must always answer.
        """
        hook = "banger_daemon_status"
        out: dict[str, dict[str, object]] = {}
        for impl in self.impls(hook):
            try:
                result, problems = self.checked_call(
                    hook, impl, self._kwargs(hook, impl, {"daemon": daemon}, None)
                )
            except Exception as exc:
                self.note(impl.plugin_name, hook, _detail(exc))
                result, problems = {"error": _detail(exc)}, []
            if problems:
                for what in problems:
                    self.note(impl.plugin_name, hook, what)
                result = {"error": f"{hook}: " + "; ".join(problems)}
            if result:
                out[impl.plugin_name] = result
        return out

    def doctor_checks(self, ctx: DoctorContext) -> list[tuple[str, Check]]:
        """``(plugin name, Check)`` pairs.

        A plugin whose hook raises or returns something that is not a list
        of checks gets one failing (not required) check named ``plugin
        NAME`` saying what was wrong; its good checks are kept.
        """
        from banger_core.doctor import Check

        hook = "banger_doctor_checks"
        out: list[tuple[str, Check]] = []
        for impl in self.impls(hook):
            name = impl.plugin_name
            try:
                result, problems = self.checked_call(hook, impl, {"ctx": ctx.for_plugin(name)})
            except Exception as exc:
                result, problems = None, [_detail(exc)]
            for check in result or []:
                out.append((name, check))
            for what in problems:
                line = self.note(name, hook, what)
                out.append((name, Check(f"plugin {name}", False, line.split(": ", 1)[1])))
        return out

    def vmm_backends(self) -> list[tuple[str, VMMBackend]]:
        """``(plugin name, VMMBackend)`` pairs, by plugin order.

        A hook that raises or returns something else than VMMBackend items
        is reported (one line naming it); its good items are kept.
        """
        return [
            (name, backend)
            for name, result in self.collect("banger_vmm_backends")
            for backend in result
        ]

    # -- lifecycle ---------------------------------------------------------
    def vm_validate(self, spec: VMSpec) -> None:
        """Let plugins reject a create or set request (each gets its read-only ``ctx``)."""
        self.each("banger_vm_validate", spec=spec)

    def vm_create(self, vm: VM, ctx: LifecycleContext) -> None:
        """Let plugins allocate persistent per-VM resources (stops at the first failure)."""
        self.each("banger_vm_create", ctx=ctx, vm=vm)

    def vm_configure(
        self,
        vm: VM,
        machine: MachineSpec,
        guest: GuestConfig,
        ctx: LifecycleContext | None = None,
    ) -> None:
        """Let plugins add to the machine spec and guest config for a boot."""
        self.each("banger_vm_configure", ctx=ctx, vm=vm, machine=machine, guest=guest)

    def vm_set(self, vm: VM, changes: dict[str, object], ctx: LifecycleContext) -> None:
        """Let plugins apply a change to a stopped VM."""
        self.each("banger_vm_set", ctx=ctx, vm=vm, changes=changes)

    def vm_started(self, vm: VM, ctx: LifecycleContext | None = None) -> None:
        """Let plugins publish a running VM."""
        self.each("banger_vm_started", ctx=ctx, vm=vm)

    def vm_republish(self, vm: VM, ctx: LifecycleContext) -> list[str]:
        """``banger_vm_started`` for a VM found running at daemon start, plugin by plugin."""
        return self.isolated("banger_vm_started", ctx=ctx, vm=vm)

    def vm_ready_checks(self, vm: VM, ctx: LifecycleContext) -> list[tuple[str, ReadyCheck]]:
        """``(plugin name, ReadyCheck)`` pairs, in plugin order."""
        return [
            (name, check)
            for name, result in self.each("banger_vm_ready_checks", ctx=ctx, vm=vm)
            for check in result or []
        ]

    def vm_dns_names(self, vm: VM) -> list[str]:
        """Every DNS name plugins publish for ``vm`` (plugin order, no duplicates)."""
        names: list[str] = []
        for _, result in self.collect("banger_vm_dns_names", vm=vm):
            for name in result:
                if name not in names:
                    names.append(name)
        return names

    def vm_stopped(self, vm: VM) -> list[str]:
        """Release runtime state in every plugin (reverse order); return failures as lines."""
        return self.teardown("banger_vm_stopped", vm=vm)

    def vm_deleted(self, vm: VM) -> list[str]:
        """Remove persistent state in every plugin (reverse order); return failures as lines."""
        return self.teardown("banger_vm_deleted", vm=vm)

    def reconcile(self, vms: list[VM]) -> list[str]:
        """Let every plugin reconcile (reverse order); return failures as lines."""
        return self.teardown("banger_reconcile", vms=vms)

    def guest_os(self) -> list[GuestOS]:
        """Every guest OS provider."""
        return [item for _, result in self.collect("banger_guest_os") for item in result]

    def image_provision(self, image: dict[str, str], steps: list[ProvisionStep]) -> None:
        """Let plugins add provisioning steps."""
        self.each("banger_image_provision", image=image, steps=steps)


def raise_failures(failures: list[str], what: str) -> None:
    """Raise one error listing every teardown failure, if there were any."""
    if failures:
        raise PluginError(f"{what}: " + "; ".join(failures))
