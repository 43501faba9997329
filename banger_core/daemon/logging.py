"""Daemon logging: loguru, JSON lines, level from config or ``BANGER_LOG_LEVEL``."""

from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger


def setup_logging(log_file: Path, level: str, *, to_stderr: bool = False) -> None:
    """Send the daemon's log to ``log_file`` as JSON lines (and stderr if asked)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.add(log_file, level=level.upper(), serialize=True, enqueue=True,
               rotation="20 MB", retention=3)
    if to_stderr:
        logger.add(sys.stderr, level=level.upper())
