"""Daemon logging: loguru, JSON lines, level from config or ``BANGER_LOG_LEVEL``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from loguru import logger


def setup_logging(log_file: Path, level: str, *, to_stderr: bool = False) -> None:
    """Send the daemon's log to ``log_file`` as JSON lines (and stderr if asked)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.add(
        log_file, level=level.upper(), serialize=True, enqueue=True, rotation="20 MB", retention=3
    )
    if to_stderr:
        logger.add(sys.stderr, level=level.upper())
    _forward_stdlib()


class _ToLoguru(logging.Handler):
    """Forward stdlib ``banger.*`` records (plugin loggers) into loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, record.getMessage())


def _forward_stdlib() -> None:
    root = logging.getLogger("banger")
    if not any(isinstance(h, _ToLoguru) for h in root.handlers):
        root.addHandler(_ToLoguru())
    root.setLevel(logging.DEBUG)
    root.propagate = False
