"""The CLI's cache of what plugins add: which command belongs to which plugin, and options.

Core commands (``banger vm list``) then start without entry-point discovery
and without importing any plugin module: ``--help`` lists plugin commands
and ``vm create --help`` shows plugin options from the cache, and the
plugins are loaded only when a plugin's own command runs or the cache is
stale.

The cache is keyed on what decides the plugin set: the interpreter, every
``sys.path`` entry's ``*.dist-info`` / ``*.egg-info`` names and mtimes (pip
install and uninstall change them), ``BANGER_PLUGINS`` /
``BANGER_DISABLE_PLUGINS``, the config files' ``[plugins] disabled`` (by the
files' mtimes) and banger's version. ``banger plugins install|uninstall``
drop it; ``BANGER_CLI_CACHE=0`` disables it. Each Python environment has
its own file (:func:`cache_path`); a damaged file is a cache miss.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import banger_core

FORMAT = 1


def cache_dir() -> Path:
    """banger's cache directory: ``$BANGER_STATE_DIR/cache`` when that is set.

    Otherwise ``$XDG_CACHE_HOME/banger`` (``~/.cache/banger`` by default).
    """
    state = os.environ.get("BANGER_STATE_DIR")
    if state:
        return Path(state) / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "banger"


def cache_path() -> Path:
    """``<cache dir>/cli-plugins-<environment>.json``: one file per Python environment.

    Two virtualenvs (or the system Python and a venv) have different plugin
    sets; each keeps its own file, so switching between them never
    invalidates the other's cache.
    """
    import zlib

    env = f"{sys.prefix}\0{sys.executable}".encode()
    return cache_dir() / f"cli-plugins-{zlib.crc32(env):08x}.json"


def enabled() -> bool:
    """Whether the cache is used (``BANGER_CLI_CACHE=0`` turns it off)."""
    return os.environ.get("BANGER_CLI_CACHE", "1") not in ("0", "no", "false", "")


def _config_files() -> list[str]:
    explicit = os.environ.get("BANGER_CONFIG")
    if explicit:
        return [explicit]
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return ["/etc/banger/config.toml", os.path.join(xdg, "banger", "config.toml")]


def fingerprint() -> str:
    """A key that changes whenever the installed plugin set may have changed."""
    h = _Key()
    h.update(f"{FORMAT}\0{banger_core.__version__}\0{sys.executable}\0".encode())
    for var in ("BANGER_PLUGINS", "BANGER_DISABLE_PLUGINS"):
        h.update(f"{var}={os.environ.get(var, '')}\0".encode())
    for path in _config_files():
        try:
            h.update(f"{path}:{os.stat(path).st_mtime_ns}\0".encode())
        except OSError:
            h.update(f"{path}:-\0".encode())
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as it:
                names = sorted(
                    (e.name, e.stat().st_mtime_ns)
                    for e in it
                    if e.name.endswith((".dist-info", ".egg-info", ".pth"))
                    or (e.name.startswith("__editable__") and e.name.endswith("_finder.py"))
                )
        except OSError:
            continue
        h.update(f"{entry}\0{names}\0".encode())
        for name, _ in names:
            if name.startswith("__editable__") or name.endswith(".egg-link"):
                h.update(_editable_sources(os.path.join(entry or ".", name)))
    return h.hexdigest()


_MAPPED = re.compile(r"'(/[^']+)'")


def _editable_sources(path: str) -> bytes:
    """Modification times of the top-level modules an editable install points at.

    An editable plugin's source changes without its dist-info changing; its
    hook module's mtime keeps the cache honest during development.
    """
    if not path.endswith(("_finder.py", ".pth")):
        return b""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return b""
    dirs = _MAPPED.findall(text) or [
        line.strip() for line in text.splitlines() if line.startswith("/")
    ]
    stamps = []
    for directory in dirs:
        try:
            with os.scandir(directory) as it:
                stamps += [(e.path, e.stat().st_mtime_ns) for e in it if e.name.endswith(".py")]
        except OSError:
            continue
    return repr(sorted(stamps)).encode()


class _Key:
    """Collects the key's parts (hashlib costs the CLI an import; crc32 of the parts will do)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, data: bytes) -> None:
        self.parts.append(data)

    def hexdigest(self) -> str:
        import zlib

        blob = b"".join(self.parts)
        return f"{zlib.crc32(blob):08x}{len(blob):x}{zlib.adler32(blob):08x}"


def load(key: str) -> dict[str, Any] | None:
    """The cached plugin layout for ``key``, or None."""
    if not enabled():
        return None
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not _well_formed(data):
        return None  # a damaged or foreign file is a cache miss, never an error
    return data


def _well_formed(data: dict[str, Any]) -> bool:
    """Whether a cache file has the shape :func:`layout` writes."""
    commands, subcommands = data.get("commands", {}), data.get("subcommands", [])
    options, problems = data.get("options", []), data.get("problems", [])
    return (
        isinstance(commands, dict)
        and all(isinstance(v, dict) and isinstance(v.get("plugin"), str) for v in commands.values())
        and isinstance(subcommands, list)
        and all(
            isinstance(v, dict)
            and all(isinstance(v.get(k), str) for k in ("plugin", "group", "name"))
            for v in subcommands
        )
        and isinstance(options, list)
        and all(isinstance(v, dict) for v in options)
        and isinstance(problems, list)
        and all(isinstance(v, str) for v in problems)
    )


def save(key: str, layout: dict[str, Any]) -> None:
    """Write the cache atomically (best effort: a read-only home just means no cache)."""
    if not enabled():
        return
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, **layout}, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def invalidate() -> None:
    """Drop the cache (after installing or uninstalling plugins)."""
    try:
        cache_path().unlink()
    except OSError:
        pass


def layout(
    commands: list[tuple[str, Any]],
    subcommands: list[tuple[str, str, Any]],
    declared: list[Any],
    problems: list[str],
) -> dict[str, Any]:
    """What the cache records of a fully loaded plugin set."""
    return {
        "commands": {
            c.name: {"plugin": p, "help": c.get_short_help_str(70)}
            for p, c in commands
            if getattr(c, "name", None)
        },
        "subcommands": [
            {"plugin": p, "group": g, "name": c.name, "help": c.get_short_help_str(70)}
            for p, g, c in subcommands
            if getattr(c, "name", None)
        ],
        "options": [{"plugin": d.plugin, **d.option.describe()} for d in declared],
        "problems": list(problems),
    }


def needs_plugins(args: list[str], data: dict[str, Any]) -> bool:
    """Whether ``args`` run a plugin's command (so its module must be imported)."""
    words = [a for a in args if not a.startswith("-")]
    if not words:
        return False
    if words[0] in data.get("commands", {}):
        return True
    for sub in data.get("subcommands", []):
        path = sub["group"].replace(".", " ").split() + [sub["name"]]
        if words[: len(path)] == path:
            return True
    return False
