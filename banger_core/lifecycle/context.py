"""The old home of the hook context; it lives in :mod:`banger_core.hookcontext` now.

Plugins import ``LifecycleContext`` from ``banger_core`` itself; this path keeps
working through this release (the plugin manager warns where a plugin uses it).
"""

from __future__ import annotations

from banger_core.hookcontext import LifecycleContext, PluginLogger, Undo, plugin_logger

__all__ = ["LifecycleContext", "PluginLogger", "Undo", "plugin_logger"]
