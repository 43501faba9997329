"""The VM as plugins see it, and the request objects hooks validate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class OptionValues(dict[str, Any]):
    """A plugin's option values; ``values["scratch-size"]`` and ``values["scratch_size"]`` agree."""

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(key.replace("-", "_"))

    def get(self, key: str, default: Any = None) -> Any:
        """Like :meth:`dict.get`, accepting dashed names."""
        return super().get(key.replace("-", "_"), default)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.replace("-", "_") if isinstance(key, str) else key)


@dataclass
class ImageInfo:
    """The image a VM boots from."""

    id: str
    name: str
    kernel: str
    rootfs: str
    initrd: str | None = None
    work_seed: str | None = None
    """Deprecated: use ``artifact("work-seed")``."""
    artifacts: dict[str, str] = field(default_factory=dict)
    """Files plugins added to the image at build time (``banger_image_artifacts``),
    ``{name: path}``."""

    def artifact(self, name: str) -> str | None:
        """The path of the image artifact ``name``, or None when the image has none."""
        if name in self.artifacts:
            return self.artifacts[name]
        return self.work_seed if name == "work-seed" else None


@dataclass
class VM:
    """One VM: what the store knows plus where its files live.

    Hooks get this object; plugins keep their own per-VM data in
    :meth:`plugin_state`, which the core saves after each hook call.
    """

    id: str
    name: str
    image: ImageInfo
    cpus: int
    memory_mib: int
    disk_size: int
    """Deprecated: the workdisk plugin's ``plugin_options("workdisk")["disk_size"]``;
    0 for VMs created since the work disk became a plugin option."""
    state: str
    ip: str
    mac: str
    gateway: str
    prefixlen: int
    dir: Path
    run_dir: Path
    tap: str | None = None
    pid: int | None = None
    root_disk: str = ""
    root_strategy: str = ""
    last_error: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    owner_uid: int = 0
    """The uid that created the VM (0: root)."""
    plugin_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    option_defaults: dict[str, dict[str, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def plugin_state(self, name: str) -> dict[str, Any]:
        """The mutable state dict of plugin ``name`` for this VM."""
        return self.plugin_states.setdefault(name, {})

    @property
    def options(self) -> dict[str, dict[str, Any]]:
        """Stored per-VM option values, ``{plugin: {key: value}}`` (without defaults)."""
        core = self.plugin_states.setdefault("core", {})
        options: dict[str, dict[str, Any]] = core.setdefault("options", {})
        return options

    def plugin_options(self, name: str) -> OptionValues:
        """Plugin ``name``'s per-VM options: declared defaults, then the stored values.

        Keys are the option names with ``_`` for ``-`` (``scratch_size``); looking
        one up by its dashed name (``"scratch-size"``) works too.
        """
        return OptionValues({**self.option_defaults.get(name, {}), **self.options.get(name, {})})

    @property
    def api_sock(self) -> Path:
        """The VMM's API socket."""
        return self.run_dir / "fc.sock"

    @property
    def vsock_path(self) -> Path:
        """The host end of the VM's hybrid vsock device."""
        return self.run_dir / "vsock.sock"

    @property
    def console_log(self) -> Path:
        """The serial console (the VMM's stdout)."""
        return self.dir / "console.log"

    @property
    def vmm_log(self) -> Path:
        """The VMM's own log."""
        return self.dir / "firecracker.log"

    @property
    def guest_config_path(self) -> Path:
        """The guest-config drive, rewritten at every boot."""
        return self.dir / "guest-config.img"

    def summary(self) -> dict[str, Any]:
        """JSON-ready form for ``vm list`` / ``vm show``."""
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image.name,
            "state": self.state,
            "cpus": self.cpus,
            "memory_mib": self.memory_mib,
            "disk_size": self.disk_size,
            "ip": self.ip,
            "mac": self.mac,
            "tap": self.tap,
            "pid": self.pid,
            "root_disk": self.root_disk,
            "root_strategy": self.root_strategy,
            "dir": str(self.dir),
            "api_sock": str(self.api_sock),
            "console_log": str(self.console_log),
            "vmm_log": str(self.vmm_log),
            "last_error": self.last_error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "owner_uid": self.owner_uid,
            "plugins": self._shown_states(),
            "options": {
                name: dict(self.plugin_options(name))
                for name in sorted(set(self.option_defaults) | set(self.options))
            },
        }

    def _shown_states(self) -> dict[str, dict[str, Any]]:
        states = {k: dict(v) for k, v in self.plugin_states.items()}
        core = states.get("core")
        if core is not None:
            core.pop("options", None)
            if not core:
                del states["core"]
        return states


@dataclass
class VMSpec:
    """A create or set request, as ``banger_vm_validate`` sees it.

    For ``vm create`` every field holds the effective value (user's or
    default) and ``is_create`` is true. For ``vm set``, ``vm`` is the current
    VM and ``changes`` holds only the fields the user changed.
    """

    name: str
    image: str
    cpus: int
    memory_mib: int
    disk_size: int
    is_create: bool = True
    vm: VM | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-VM plugin options, ``{plugin: {key: value}}``: effective values for a
    create, only the changed ones for a set."""
