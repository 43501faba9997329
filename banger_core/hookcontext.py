"""The context every lifecycle hook gets: its plugin's config, the runner, undo, failpoints.

The core makes one :class:`LifecycleContext` per operation (a create, a
start, a set); it holds the operation's undo log. Each plugin's hook gets its
own *view* of it (:meth:`LifecycleContext.for_plugin`): ``ctx.config`` is
that plugin's ``[plugins.<name>]`` section, ``ctx.log`` logs with the
plugin's name, and undos it registers are labelled with the plugin's name
but land in the one shared log, so a later failure anywhere rolls back
everything in reverse order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from banger_core import system
from banger_core.errors import BangerError, PluginError

_log = logging.getLogger("banger")


@dataclass
class Undo:
    """One registered rollback step."""

    description: str
    fn: Callable[[], Any]


def plugin_section(settings: Any, name: str, *, own: bool = False) -> dict[str, Any]:
    """The ``[plugins.<name>]`` section: the one way every context reads plugin settings.

    ``own``: the asking plugin's own section, which always exists (empty when
    it declares no keys). Another name must be a loaded plugin or a declared
    section (``Settings.plugin_config``), else :class:`NotFoundError`.
    """
    if settings is None:
        return {}
    strict = getattr(settings, "plugin_config", None)
    if own or strict is None:
        return dict(settings.plugin(name))
    return dict(strict(name))


class PluginLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines start with the plugin's name (``plugin nat: ...``)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        """Prefix the message with the plugin name."""
        return f"plugin {self.extra['plugin'] if self.extra else '?'}: {msg}", kwargs


def plugin_logger(name: str) -> logging.LoggerAdapter[logging.Logger]:
    """The logger :attr:`LifecycleContext.log` and ``call.log`` give plugin ``name``.

    Records go to the ``banger.plugins.<name>`` stdlib logger; the daemon
    forwards stdlib logging into its log file.
    """
    return PluginLogger(logging.getLogger(f"banger.plugins.{name}"), {"plugin": name})


@dataclass(repr=False)
class LifecycleContext:
    """What a lifecycle hook gets as ``ctx``.

    Attributes a plugin uses:

    - ``config``: its effective ``[plugins.<name>]`` section (a mapping).
    - ``plugin_name``: its entry-point name.
    - ``runner``: :func:`banger_core.system.run`-compatible; run an argv
      list, get a result with ``returncode``, ``stdout`` and ``stderr``.
    - ``settings``: the daemon's whole effective configuration.
    - ``log``: a logger whose lines name the plugin.
    - :meth:`add_undo` and :meth:`failpoint`.
    """

    settings: Any
    runner: system.Runner = system.run
    undos: list[Undo] = field(default_factory=list)
    plugin_name: str = ""
    can_undo: bool = True
    hook: str = ""
    _config: Mapping[str, Any] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"LifecycleContext(plugin={self.plugin_name!r}, hook={self.hook!r}, "
            f"undos={len(self.undos)})"
        )

    # -- what plugins use ------------------------------------------------------
    @property
    def config(self) -> Mapping[str, Any]:
        """This plugin's effective ``[plugins.<name>]`` section."""
        if self._config is not None:
            return self._config
        if not self.plugin_name:
            return {}
        return plugin_section(self.settings, self.plugin_name, own=True)

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger bound to this plugin (``plugin <name>: ...`` lines in the daemon log)."""
        return plugin_logger(self.plugin_name or "core")

    def add_undo(self, fn: Callable[[], Any], description: str = "") -> None:
        """Register ``fn`` to run if anything later in this operation fails.

        Available in the hooks that allocate: ``banger_vm_create``,
        ``banger_vm_configure``, ``banger_vm_set`` and ``banger_vm_started``.
        Undos run in reverse order of registration, also when the hook that
        registered one raises afterwards.
        """
        if not self.can_undo:
            raise PluginError(
                f"plugin {self.plugin_name}: {self.hook or 'this hook'} cannot "
                "register undos (only create, configure, set and started can)"
            )
        label = description or getattr(fn, "__name__", "undo")
        if self.plugin_name:
            label = f"plugin {self.plugin_name}: {label}"
        self.undos.append(Undo(label, fn))

    def failpoint(self, name: str) -> None:
        """Fail here when ``BANGER_FAILPOINTS`` lists ``<plugin>.<name>``.

        Lets a plugin's tests prove that its own undos run when a step of it
        fails half-way (``BANGER_FAILPOINTS=<plugin>.after-create``).
        """
        from banger_core import failpoints

        failpoints.check(f"{self.plugin_name}.{name}" if self.plugin_name else name)

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The effective ``[plugins.<name>]`` section (prefer :attr:`config` for your own).

        :raise banger_core.NotFoundError: no plugin is called ``name``.
        """
        return plugin_section(self.settings, name, own=name == self.plugin_name)

    # -- what the core uses ----------------------------------------------------
    def for_plugin(self, name: str, hook: str = "") -> LifecycleContext:
        """A view for plugin ``name`` sharing this operation's undo log."""
        return LifecycleContext(
            settings=self.settings,
            runner=self.runner,
            undos=self.undos,
            plugin_name=name,
            can_undo=self.can_undo,
            hook=hook,
        )

    def rollback(self) -> list[str]:
        """Run every undo in reverse order; return the ones that failed."""
        failures = []
        while self.undos:
            undo = self.undos.pop()
            try:
                undo.fn()
            except Exception as exc:
                detail = (
                    str(exc) if isinstance(exc, BangerError) else f"{type(exc).__name__}: {exc}"
                )
                _log.error("rollback step %r failed: %s", undo.description, detail)
                failures.append(f"{undo.description}: {detail}")
        return failures

    def commit(self) -> None:
        """Forget the undo steps: the work succeeded."""
        self.undos.clear()
