"""Image recipes: what goes into a guest image, and its fingerprint.

A recipe is a TOML file (the default is ``banger_guest/recipes/debian.toml``)::

    name = "debian-bookworm"
    os = "debian"
    [bootstrap]
    suite = "bookworm"
    variant = "minbase"
    packages = ["openssh-server", "python3", ...]
    [rootfs]
    min_size_mib = 1024
    headroom_mib = 512

The fingerprint covers the recipe and every file the build installs into the
image (the guest programs, units and sshd drop-in), so editing ``boot.py``
changes the fingerprint and a cached image is rebuilt.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from banger_core.errors import ValidationError

BUILD_FORMAT = 2
"""Bumped when build.py changes what it produces from the same inputs.

2: the kernel is exported as an ELF vmlinux (1: the bzImage as is).
"""

SSHD_DROPIN = """\
# banger: root logs in with SSH keys only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
# Keys are also written to /run by banger-boot, so they work on a read-only /root.
AuthorizedKeysFile .ssh/authorized_keys /run/banger/ssh/authorized_keys
# banger-boot writes host-key lines here when the root file system is read-only.
Include /run/banger/ssh/sshd_config*.conf
"""

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
SUITE_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
VARIANTS = (
    "extract",
    "custom",
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "debootstrap",
    "standard",
)
OS_NAMES = ("debian",)


@dataclass(frozen=True)
class InstalledFile:
    """A file the image build writes into the guest root."""

    dest: str
    content: bytes
    mode: int


@dataclass(frozen=True)
class Recipe:
    """A validated image recipe."""

    name: str
    os: str
    suite: str
    variant: str
    packages: tuple[str, ...]
    rootfs_min_size_mib: int
    rootfs_headroom_mib: int
    text: str = field(repr=False)
    source: str = "<recipe>"

    def installed_files(self) -> list[InstalledFile]:
        """Every file the build installs into the image (what the fingerprint covers)."""
        return installed_files()

    def fingerprint(self, files: list[InstalledFile] | None = None) -> str:
        """sha256 hex of the recipe text, the build format and every installed file.

        ``files`` defaults to :meth:`installed_files`; the builder passes the
        snapshot it actually installs.
        """
        h = hashlib.sha256()
        h.update(f"banger-image-build {BUILD_FORMAT}\n".encode())
        h.update(b"recipe\0" + self.text.encode() + b"\0")
        for f in self.installed_files() if files is None else files:
            h.update(f"{f.dest}\0{f.mode:o}\0{len(f.content)}\0".encode())
            h.update(f.content)
        return h.hexdigest()


def _guest_root() -> Path:
    import banger_guest

    return Path(banger_guest.__file__).resolve().parent


def installed_files() -> list[InstalledFile]:
    """Files copied from ``banger_guest`` (and the sshd drop-in) into every image.

    Only what the core needs: the boot program and its unit. Plugins add their
    own guest files (the vsock plugin its agent) through provisioning steps.
    """
    root = _guest_root()
    files = [
        InstalledFile("/usr/lib/banger/banger-boot", (root / "boot.py").read_bytes(), 0o755),
        InstalledFile("/etc/ssh/sshd_config.d/50-banger.conf", SSHD_DROPIN.encode(), 0o644),
    ]
    for unit in sorted((root / "systemd").glob("*.service")):
        files.append(
            InstalledFile(f"/usr/lib/systemd/system/{unit.name}", unit.read_bytes(), 0o644)
        )
    return files


def default_recipe_path() -> Path:
    """Path of the default recipe (Debian bookworm) shipped in banger_guest."""
    return _guest_root() / "recipes" / "debian.toml"


def _table(doc: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ValidationError(f"{source}: [{key}] must be a table")
    return value


def _int(table: dict[str, Any], key: str, default: int, where: str, *, minimum: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ValidationError(f"{where}: unknown key(s) {', '.join(extra)}")


def parse_recipe(text: str, *, source: str = "<recipe>") -> Recipe:
    """Parse and validate recipe TOML text; raise ValidationError naming the problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{source}: not valid TOML: {exc}") from None
    _unknown(doc, {"name", "os", "bootstrap", "rootfs"}, source)
    name = doc.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(
            f"{source}: name must be lowercase letters, digits, '.', '_' or '-' "
            f"(1-63 chars), got {name!r}"
        )
    os_name = doc.get("os", "debian")
    if os_name not in OS_NAMES:
        raise ValidationError(f"{source}: os must be one of {', '.join(OS_NAMES)}, got {os_name!r}")

    boot = _table(doc, "bootstrap", source)
    _unknown(boot, {"suite", "variant", "packages"}, f"{source} [bootstrap]")
    suite = boot.get("suite")
    if not isinstance(suite, str) or not SUITE_RE.match(suite):
        raise ValidationError(f"{source}: bootstrap.suite must be a suite name, got {suite!r}")
    variant = boot.get("variant", "minbase")
    if variant not in VARIANTS:
        raise ValidationError(
            f"{source}: bootstrap.variant must be one of {', '.join(VARIANTS)}, got {variant!r}"
        )
    packages = boot.get("packages", [])
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        raise ValidationError(f"{source}: bootstrap.packages must be a list of package names")
    for p in packages:
        if not PACKAGE_RE.match(p):
            raise ValidationError(f"{source}: bootstrap.packages: bad package name {p!r}")
    missing = []
    if "openssh-server" not in packages:
        missing.append("openssh-server")
    if not {"python3", "python3-minimal"} & set(packages):
        missing.append("python3")
    if missing:
        raise ValidationError(
            f"{source}: bootstrap.packages must include {', '.join(missing)} "
            "(banger's guest programs need them)"
        )

    rootfs = _table(doc, "rootfs", source)
    _unknown(rootfs, {"min_size_mib", "headroom_mib"}, f"{source} [rootfs]")
    return Recipe(
        name=name,
        os=os_name,
        suite=suite,
        variant=variant,
        packages=tuple(packages),
        rootfs_min_size_mib=_int(rootfs, "min_size_mib", 1024, f"{source}: rootfs", minimum=64),
        rootfs_headroom_mib=_int(rootfs, "headroom_mib", 512, f"{source}: rootfs", minimum=0),
        text=text,
        source=source,
    )


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate the recipe file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read recipe {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValidationError(f"recipe {p} is not UTF-8 text") from None
    return parse_recipe(text, source=str(p))


def default_recipe() -> Recipe:
    """Load the default (Debian) recipe."""
    return load_recipe(default_recipe_path())
