"""Where banger keeps its state, runtime files and configuration.

``BANGER_STATE_DIR`` puts everything (state and runtime) under one directory,
which is what tests and scripts use. Otherwise root uses ``/var/lib/banger``
and ``/run/banger``; other users get their XDG directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SYSTEM_CONFIG = Path("/etc/banger/config.toml")


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def user_config_path() -> Path:
    """The user's config file: ``$XDG_CONFIG_HOME/banger/config.toml``."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "banger" / "config.toml"


def config_files() -> list[Path]:
    """Config files in the order they are applied (later wins).

    ``BANGER_CONFIG`` names the only file read, which keeps scripts and tests
    independent of the machine's own configuration.
    """
    explicit = os.environ.get("BANGER_CONFIG")
    if explicit:
        return [Path(explicit)]
    return [SYSTEM_CONFIG, user_config_path()]


@dataclass(frozen=True)
class Paths:
    """Every location banger reads or writes."""

    state_dir: Path
    run_dir: Path

    @classmethod
    def from_env(cls) -> Paths:
        """Resolve the directories from the environment and the user id."""
        override = os.environ.get("BANGER_STATE_DIR")
        if override:
            state = Path(override).absolute()
            return cls(state_dir=state, run_dir=state / "run")
        system = cls(state_dir=Path("/var/lib/banger"), run_dir=Path("/run/banger"))
        if os.geteuid() == 0 or any(
            os.path.exists(p) for p in (system.socket, system.run_dir, system.state_dir)
        ):
            # A member of a system daemon's socket_group uses that daemon, running or not
            # (when it is stopped they are told so, never given a daemon of their own).
            return system
        state = _xdg("XDG_STATE_HOME", ".local/state") / "banger"
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        run = Path(runtime) / "banger" if runtime else state / "run"
        return cls(state_dir=state, run_dir=run)

    @property
    def db(self) -> Path:
        """The SQLite store."""
        return self.state_dir / "banger.db"

    @property
    def socket(self) -> Path:
        """The daemon's RPC socket."""
        return self.run_dir / "bangerd.sock"

    @property
    def pid_file(self) -> Path:
        """Holds the daemon's PID while it runs."""
        return self.run_dir / "bangerd.pid"

    @property
    def log_dir(self) -> Path:
        """Daemon logs."""
        return self.state_dir / "logs"

    @property
    def daemon_log(self) -> Path:
        """The daemon's JSON-lines log."""
        return self.log_dir / "bangerd.log"

    @property
    def vms_dir(self) -> Path:
        """Per-VM persistent directories (disks, logs)."""
        return self.state_dir / "vms"

    @property
    def vm_run_dir(self) -> Path:
        """Per-VM runtime directories (API and vsock sockets)."""
        return self.run_dir / "vms"

    @property
    def images_dir(self) -> Path:
        """Built and registered image artifacts."""
        return self.state_dir / "images"

    @property
    def ssh_dir(self) -> Path:
        """banger's own SSH key pair, installed into every VM."""
        return self.state_dir / "ssh"

    def ensure(self) -> None:
        """Create the directories with private permissions."""
        for path in (
            self.state_dir,
            self.run_dir,
            self.log_dir,
            self.vms_dir,
            self.vm_run_dir,
            self.images_dir,
            self.ssh_dir,
        ):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
