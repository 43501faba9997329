"""Configuration: TOML files layered over declared defaults.

Order (later wins): declared defaults, ``/etc/banger/config.toml``, the
user's XDG config (or only ``$BANGER_CONFIG`` when set), then environment
overrides (``BANGER_LOG_LEVEL``, ``BANGER_FIRECRACKER_BIN``). Every effective
value remembers where it came from, for ``banger config show``.

This module is imported by the CLI, so it uses only the standard library.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from banger_core.errors import ConfigError, NotFoundError
from banger_core.paths import Paths, config_files
from banger_core.pluginconfig import Option

LOG_LEVELS = ("trace", "debug", "info", "warning", "error")

CORE_SCHEMA: dict[str, dict[str, Option]] = {
    "daemon": {
        "log_level": Option("info", "daemon log level", choices=LOG_LEVELS),
        "socket_group": Option("", "group allowed to use the socket (mode 0660); empty: 0600"),
        "allowed_image_dirs": Option(
            [],
            "directories under which socket_group members may "
            "register image files (root may use any path)",
            type=list,
        ),
        "shared_vms": Option(
            False,
            "socket_group members may use each other's VMs (off: a member uses only the VMs "
            "they created)",
            type=bool,
        ),
        "netns": Option(
            "",
            "run the daemon and its VMs' network in this network namespace "
            "(created if missing); empty: the host's own network",
        ),
    },
    "firecracker": {
        "binary": Option(
            "",
            "the VMM program (name on PATH or a path); empty: chosen by backend, "
            "else firecracker from PATH",
        ),
        "backend": Option(
            "",
            "a registered VMM back-end by name (banger doctor lists them), used when "
            "binary is empty",
        ),
        "start_timeout": Option(5.0, "seconds to wait for the VMM's API socket"),
        "transport": Option(
            "auto",
            "virtio transport: auto (MMIO when the kernel can use it, "
            "else PCI), mmio, or pci (--enable-pci)",
            choices=("auto", "mmio", "pci"),
        ),
    },
    "vm": {
        "default_image": Option("debian", "image used when vm create has no --image"),
        "cpus": Option(2, "vCPUs of a new VM"),
        "memory_mib": Option(1024, "memory of a new VM in MiB"),
        "stop_grace_seconds": Option(10.0, "how long vm stop waits after Ctrl-Alt-Del"),
        "ssh_timeout_seconds": Option(90.0, "how long create/start wait for SSH"),
    },
    "network": {
        "bridge": Option("banger0", "host bridge the VMs' TAP devices join"),
        "subnet": Option("172.30.0.0/24", "VM subnet (IPv4 CIDR)"),
        "gateway": Option("", "bridge address; empty: the subnet's first host"),
        "tap_pool_size": Option(4, "idle TAP devices kept ready"),
        "nameservers": Option([], "nameservers written into guests", type=list),
    },
    "storage": {
        "root_disk": Option(
            "auto",
            "per-VM root disk strategy",
            choices=("auto", "dm-snapshot", "reflink", "sparse-copy"),
        ),
    },
    "plugins": {
        "disabled": Option([], "plugins not to load (by entry-point name)", type=list),
    },
}

ENV_OVERRIDES = {
    "BANGER_LOG_LEVEL": ("daemon", "log_level"),
    "BANGER_FIRECRACKER_BIN": ("firecracker", "binary"),
}


@dataclass
class Settings:
    """The effective configuration, with the origin of every value."""

    paths: Paths
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    origins: dict[tuple[str, str], str] = field(default_factory=dict)
    plugin_schema: dict[str, dict[str, Option]] = field(default_factory=dict)
    #: The VMM the daemon chose at start (a ``banger_core.vmmbackends.VMMChoice``);
    #: ``[firecracker] binary`` then holds its program.
    vmm: Any = None
    #: names of the loaded plugins (set by whoever loaded them; a plugin that
    #: declares no configuration still has a section, an empty one)
    plugin_names: tuple[str, ...] = ()

    def get(self, section: str, key: str) -> Any:
        """Return the effective value of ``[section] key``."""
        return self.values[section][key]

    def plugin(self, name: str) -> dict[str, Any]:
        """Return the effective ``[plugins.<name>]`` values (``{}`` for any other name)."""
        return dict(self.values.get(f"plugins.{name}", {}))

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The effective ``[plugins.<name>]`` section of a plugin that exists.

        :raise NotFoundError: no loaded plugin is called ``name`` and none
            declared a section of that name (a typo is an error, not ``{}``).
        """
        if f"plugins.{name}" in self.values or name in self.plugin_schema:
            return self.plugin(name)
        if name in self.plugin_names:
            return {}
        known = ", ".join(sorted(set(self.plugin_names) | set(self.plugin_schema))) or "none"
        raise NotFoundError(f"no plugin {name!r} (plugins: {known})")

    def rows(self) -> list[dict[str, Any]]:
        """Every effective value as ``{section, key, value, source}`` rows."""
        out = []
        for section, keys in self.values.items():
            for key, value in keys.items():
                out.append(
                    {
                        "section": section,
                        "key": key,
                        "value": value,
                        "source": self.origins.get((section, key), "default"),
                    }
                )
        return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except PermissionError:
        raise ConfigError(f"{path}: cannot read config (permission denied)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _apply(
    settings: Settings,
    schema: Mapping[str, Mapping[str, Option]],
    data: Mapping[str, Any],
    origin: str,
) -> None:
    """Validate ``data`` against ``schema`` and layer it onto ``settings``."""
    for section, table in data.items():
        if section == "plugins" and isinstance(table, dict):
            own = {k: v for k, v in table.items() if not isinstance(v, dict)}
            _apply_table(settings, "plugins", schema["plugins"], own, origin)
            for name, sub in table.items():
                if not isinstance(sub, dict):
                    continue
                sub_schema = settings.plugin_schema.get(name)
                if sub_schema is None:
                    # A section for a plugin that is not installed is kept
                    # out of the effective config but is not an error: the
                    # plugin may simply be disabled or uninstalled.
                    continue
                _apply_table(settings, f"plugins.{name}", sub_schema, sub, origin)
            continue
        if section not in schema:
            allowed = ", ".join(sorted(schema))
            raise ConfigError(f"{origin}: unknown section [{section}] (known: {allowed})")
        if not isinstance(table, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        _apply_table(settings, section, schema[section], table, origin)


def _apply_table(
    settings: Settings,
    section: str,
    keys: Mapping[str, Option],
    table: Mapping[str, Any],
    origin: str,
) -> None:
    """Validate one table's keys and layer them onto ``settings``."""
    for key, value in table.items():
        option = keys.get(key)
        if option is None:
            allowed = ", ".join(sorted(keys))
            raise ConfigError(f"{origin}: unknown key {section}.{key} (known: {allowed})")
        problem = option.check(value)
        if problem:
            raise ConfigError(f"{origin}: {section}.{key}: {problem}")
        settings.values[section][key] = value
        settings.origins[(section, key)] = origin


def load_settings(
    plugin_schema: Mapping[str, Mapping[str, Option]] | None = None,
    *,
    files: list[Path] | None = None,
    paths: Paths | None = None,
) -> Settings:
    """Load the effective settings.

    :param plugin_schema: ``{plugin name: {key: Option}}`` from
        ``banger_config_defaults``.
    :param files: config files to read instead of the standard locations.
    """
    settings = Settings(
        paths=paths or Paths.from_env(),
        plugin_schema={k: dict(v) for k, v in (plugin_schema or {}).items()},
    )
    schema: dict[str, dict[str, Option]] = dict(CORE_SCHEMA)
    for name, keys in settings.plugin_schema.items():
        schema[f"plugins.{name}"] = keys
    for section, keys in schema.items():
        settings.values[section] = {k: opt.default for k, opt in keys.items()}
    for path in files if files is not None else config_files():
        data = _read_toml(path)
        if data:
            _apply(settings, CORE_SCHEMA, data, str(path))
    for var, (section, key) in ENV_OVERRIDES.items():
        raw = os.environ.get(var)
        if raw:
            option = CORE_SCHEMA[section][key]
            value = raw.lower() if key == "log_level" else raw
            problem = option.check(value)
            if problem:
                raise ConfigError(f"${var}: {problem}")
            settings.values[section][key] = value
            settings.origins[(section, key)] = f"${var}"
    return settings
