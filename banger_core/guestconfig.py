"""The guest-config document: one versioned JSON built from core and plugin fragments.

Written at every boot to a small read-only drive; the guest's boot program
(``guest/banger_guest/boot.py``) finds it by its magic line and applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from banger_core.errors import ValidationError

MAGIC = b"BANGER-GUEST-CONFIG 1\n"
VERSION = 1
BLOCK = 4096


@dataclass
class GuestConfig:
    """Builder for the guest-config document."""

    hostname: str
    authorized_keys: list[str] = field(default_factory=list)
    nameservers: list[str] = field(default_factory=list)
    address: str = ""
    """The guest's IPv4 address on its NIC (empty: the guest configures no address)."""
    prefixlen: int = 24
    gateway: str = ""
    mac: str = ""
    """The NIC's MAC: the guest finds its interface by it, whatever the kernel named it."""
    mtu: int | None = None
    interface: str = "eth0"
    mounts: list[dict[str, str]] = field(default_factory=list)
    files: list[dict[str, str]] = field(default_factory=list)
    agent_vsock_port: int = 1024
    plugins: dict[str, Any] = field(default_factory=dict)

    def add_mount(
        self, device: str, target: str, fstype: str = "ext4", options: str = "defaults"
    ) -> None:
        """Mount ``device`` at ``target`` at boot; one mount per target."""
        if any(m["target"] == target for m in self.mounts):
            raise ValidationError(f"two mounts for {target}")
        self.mounts.append(
            {"device": device, "target": target, "fstype": fstype, "options": options}
        )

    def mount_order(self) -> list[dict[str, str]]:
        """The mounts in the order the guest applies them: shallowest target first.

        Whatever order plugins added them in, ``/root`` is mounted before
        ``/root/app``, so a deeper mount is never hidden by a later one above
        it. Mounts of equal depth keep the order they were added in.
        """
        return sorted(self.mounts, key=lambda m: len(PurePosixPath(m["target"]).parts))

    def add_file(self, path: str, content: str, mode: str = "0644") -> None:
        """Write a file in the guest at boot."""
        if not path.startswith("/"):
            raise ValidationError(f"guest file path {path!r} must be absolute")
        self.files.append({"path": path, "content": content, "mode": mode})

    def set_plugin(self, name: str, data: Any) -> None:
        """Pass free-form data to the plugin's guest-side code."""
        self.plugins[name] = data

    def document(self) -> dict[str, Any]:
        """The JSON document."""
        doc: dict[str, Any] = {
            "version": VERSION,
            "hostname": self.hostname,
            "ssh": {"authorized_keys": list(self.authorized_keys)},
            "mounts": self.mount_order(),
            "files": list(self.files),
            "agent": {"vsock_port": self.agent_vsock_port},
            "plugins": dict(self.plugins),
        }
        network: dict[str, Any] = {}
        if self.address:
            network.update(interface=self.interface, address=self.address, prefix=self.prefixlen)
            if self.gateway:
                network["gateway"] = self.gateway
            if self.mac:
                network["mac"] = self.mac
            if self.mtu:
                network["mtu"] = self.mtu
        if self.nameservers:
            network["nameservers"] = list(self.nameservers)
        if network:
            doc["network"] = network
        return doc

    def encode(self) -> bytes:
        """The drive's bytes, made by the one encoder the guest's decoder is tested against.

        (``banger_guest.guestconfig_format.encode_config``: magic line, JSON,
        NUL padding to whole 4096-byte blocks; the document is validated with
        the guest's own validator first, so a bad fragment fails the boot
        stage on the host, naming the field, not silently in the guest.)
        """
        from banger_guest.guestconfig_format import ConfigFormatError, encode_config

        try:
            encoded: bytes = encode_config(self.document())
            return encoded
        except ConfigFormatError as exc:
            raise ValidationError(f"guest config: {exc}") from None

    def write_drive(self, path: Path) -> Path:
        """Write the drive image atomically and return its path."""
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.encode())
        tmp.replace(path)
        return path


def decode(data: bytes) -> dict[str, Any]:
    """Parse a guest-config drive with the guest's own decoder (tests, debugging)."""
    from banger_guest.guestconfig_format import ConfigFormatError, decode_config

    try:
        decoded: dict[str, Any] = decode_config(data)
        return decoded
    except ConfigFormatError as exc:
        raise ValidationError(str(exc)) from None
