"""The context a create/start/set hook gets: undo registration and config access."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from banger_core import system


@dataclass
class Undo:
    """One registered rollback step."""

    description: str
    fn: Callable[[], Any]


@dataclass
class LifecycleContext:
    """Collects undo steps; the core runs them in reverse when a step fails."""

    settings: Any
    runner: system.Runner = system.run
    undos: list[Undo] = field(default_factory=list)

    def add_undo(self, fn: Callable[[], Any], description: str = "") -> None:
        """Register ``fn`` to run if anything later fails."""
        self.undos.append(Undo(description or getattr(fn, "__name__", "undo"), fn))

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The effective ``[plugins.<name>]`` section."""
        return self.settings.plugin(name)

    def rollback(self) -> list[str]:
        """Run every undo in reverse order; return the ones that failed."""
        failures = []
        while self.undos:
            undo = self.undos.pop()
            try:
                undo.fn()
            except Exception as exc:
                logger.error("rollback step {!r} failed: {}", undo.description, exc)
                failures.append(f"{undo.description}: {exc}")
        return failures

    def commit(self) -> None:
        """Forget the undo steps: the work succeeded."""
        self.undos.clear()
