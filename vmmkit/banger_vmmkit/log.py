"""Firecracker-style log lines for the simulator.

Format (as Firecracker's logger writes it)::

    2024-05-16T13:40:01.524538154 [anonymous-instance:main:INFO:src/firecracker/src/main.rs] msg

The level appears with ``show_level`` and the origin with ``show_log_origin``.
Before ``PUT /logger`` (or ``--log-path``) lines go to stdout.
"""

from __future__ import annotations

import os
import threading
import time

LEVELS = {"off": 0, "error": 1, "warning": 2, "warn": 2, "info": 3, "debug": 4, "trace": 5}
LEVEL_NAMES = {1: "ERROR", 2: "WARN", 3: "INFO", 4: "DEBUG", 5: "TRACE"}
ORIGINS = {
    "main": "src/firecracker/src/main.rs",
    "fc_api": "src/firecracker/src/api_server/parsed_request.rs",
    "fc_vmm": "src/vmm/src/lib.rs",
}


def parse_level(text: str) -> int | None:
    """Return the numeric level for a case-insensitive name, or None."""
    return LEVELS.get(text.strip().lower())


class Logger:
    """Thread-safe logger writing to stdout or a file, Firecracker style."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.level = LEVELS["info"]
        self.show_level = False
        self.show_origin = False
        self.fd: int | None = None  # None = stdout
        self.lock = threading.Lock()

    def configure(
        self,
        fd: int | None = None,
        level: int | None = None,
        show_level: bool | None = None,
        show_origin: bool | None = None,
    ) -> None:
        """Apply a (partial) configuration; a new fd replaces the old one."""
        with self.lock:
            if fd is not None:
                if self.fd is not None:
                    try:
                        os.close(self.fd)
                    except OSError:
                        pass
                self.fd = fd
            if level is not None:
                self.level = level
            if show_level is not None:
                self.show_level = show_level
            if show_origin is not None:
                self.show_origin = show_origin

    def _stamp(self) -> str:
        now = time.time_ns()
        secs, nanos = divmod(now, 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(secs)) + f".{nanos:09d}"

    def log(self, level: int, message: str, thread: str = "main") -> None:
        """Write one line when ``level`` passes the filter."""
        if level > self.level or self.level == 0:
            return
        tag = f"{self.instance_id}:{thread}"
        if self.show_level:
            tag += f":{LEVEL_NAMES.get(level, 'INFO')}"
        if self.show_origin:
            tag += f":{ORIGINS.get(thread, 'src/vmm/src/lib.rs')}"
        line = f"{self._stamp()} [{tag}] {message}\n".encode(errors="replace")
        with self.lock:
            fd = 1 if self.fd is None else self.fd
            try:
                os.write(fd, line)
            except OSError:
                pass

    def error(self, message: str, thread: str = "main") -> None:
        """Log at ERROR."""
        self.log(1, message, thread)

    def warn(self, message: str, thread: str = "main") -> None:
        """Log at WARN."""
        self.log(2, message, thread)

    def info(self, message: str, thread: str = "main") -> None:
        """Log at INFO."""
        self.log(3, message, thread)

    def debug(self, message: str, thread: str = "main") -> None:
        """Log at DEBUG."""
        self.log(4, message, thread)
