#!/usr/bin/python3
"""banger-boot: apply the banger guest configuration inside a VM.

Installed into images as ``/usr/lib/banger/banger-boot``. This file is
standalone (standard library only, no other banger module) because it is
copied into the guest image as is.

Modes:

* ``--systemd`` (real VM, oneshot unit ordered before ``ssh.service``):
  apply the guest configuration and exit.
* PID-1 mode (``BANGER_GUEST_SIMULATED=1``, the Firecracker simulator runs it
  as the guest's init): mount tmpfs on ``/run`` and ``/tmp``, apply the
  configuration, run ``sshd`` and, in systemd's place, every other enabled
  ``banger-*.service`` unit of the image (what plugins installed, such as the
  vsock plugin's agent) as children, reap zombies, and on
  SIGINT/SIGTERM stop everything, sync, unmount what it mounted and exit 0.
  As the real PID 1 of a guest kernel (``init=/usr/lib/banger/banger-boot``)
  it also mounts ``/proc``, ``/sys`` and ``/dev`` when the initrd did not,
  brings ``lo`` up, asks the kernel to turn Ctrl-Alt-Del into SIGINT, and
  ends by remounting ``/`` read-only and rebooting (``reboot=k``: the VMM exits).

The guest-config drive is a raw block device holding the line
``BANGER-GUEST-CONFIG 1`` followed by one UTF-8 JSON document and NUL padding
(see ``guest/README.md``). Every step is logged to the console (stdout) with a
``banger-boot:`` prefix.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

MAGIC = b"BANGER-GUEST-CONFIG 1\n"
"""First line of a guest-config drive (format version 1 of the container)."""
MAGIC_PREFIX = b"BANGER-GUEST-CONFIG "
SUPPORTED_MAJOR = 1
"""Major version of the JSON document this program understands."""
MAX_CONFIG_BYTES = 16 * 1024 * 1024
DEFAULT_AGENT_PORT = 1024
BANGER_LIB = "/usr/lib/banger"
RUN_DIR = "/run/banger"
HOST_KEY_KINDS = ("ed25519", "ecdsa")
SSH_RUN_DIR = "/run/banger/ssh"
AGENT_CONFIG = "/run/banger/agent.json"
RESOLV_RUN = "/run/banger/resolv.conf"
STOP_GRACE_SECONDS = 5.0
INTERFACE_WAIT_SECONDS = 15.0
"""How long to wait for the guest's NIC to appear (its driver may load late)."""
UNIT_WANTS = "/etc/systemd/system/multi-user.target.wants"
"""Where image builds enable units; PID-1 mode starts the ``banger-*`` ones."""
GUEST_MODULES = ("virtio_net", "vmw_vsock_virtio_transport")
"""Modules PID-1 mode loads itself (no udev): the NIC and the vsock transport."""


class ConfigFormatError(Exception):
    """The guest-config drive or its JSON document is unusable."""


# --------------------------------------------------------------------------
# console


def log(message: str) -> None:
    """Write one ``banger-boot:`` line to the console (stdout) and flush."""
    try:
        sys.stdout.write(f"banger-boot: {message}\n")
        sys.stdout.flush()
    except OSError:
        pass


# --------------------------------------------------------------------------
# finding and reading the configuration


def parse_cmdline(text: str) -> dict[str, str]:
    """Parse a kernel command line into ``{key: value}`` (flags map to "")."""
    args: dict[str, str] = {}
    for word in text.split():
        key, _, value = word.partition("=")
        args[key] = value
    return args


def decode_config(data: bytes, *, source: str = "config drive") -> dict[str, Any]:
    """Decode the raw content of a guest-config drive into its JSON document.

    Raises :class:`ConfigFormatError` with a message naming ``source`` when
    the magic line is missing, the container version is unknown, the JSON is
    malformed, or the document's ``version`` has an unsupported major number.
    """
    if not data.startswith(MAGIC_PREFIX):
        raise ConfigFormatError(f"{source}: not a banger guest-config drive (no magic line)")
    header, sep, body = data.partition(b"\n")
    if not sep:
        raise ConfigFormatError(f"{source}: truncated magic line")
    container = header[len(MAGIC_PREFIX) :].decode("ascii", "replace").strip()
    if container != "1":
        raise ConfigFormatError(
            f"{source}: unsupported guest-config drive format {container!r} "
            f"(this banger-boot reads format 1)"
        )
    body = body.split(b"\0", 1)[0].strip()
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigFormatError(f"{source}: guest config is not valid UTF-8 JSON: {exc}") from None
    validate_config(doc, source=source)
    return doc


def _major(version: Any) -> int | None:
    if isinstance(version, bool):
        return None
    if isinstance(version, int):
        return version
    if isinstance(version, str):
        head = version.split(".", 1)[0]
        if head.isdigit():
            return int(head)
    return None


def validate_config(doc: Any, *, source: str = "config drive") -> None:
    """Check the shape of a guest-config document; raise ConfigFormatError if wrong."""
    if not isinstance(doc, dict):
        raise ConfigFormatError(f"{source}: guest config must be a JSON object")
    major = _major(doc.get("version"))
    if major is None:
        raise ConfigFormatError(f"{source}: guest config has no valid 'version'")
    if major != SUPPORTED_MAJOR:
        raise ConfigFormatError(
            f"{source}: unsupported guest config version {doc.get('version')!r} "
            f"(this banger-boot understands version {SUPPORTED_MAJOR}); "
            "update the image or banger"
        )
    checks: list[tuple[str, type | tuple[type, ...]]] = [
        ("hostname", str),
        ("ssh", dict),
        ("network", dict),
        ("mounts", list),
        ("files", list),
        ("agent", dict),
        ("plugins", dict),
    ]
    for key, kind in checks:
        if key in doc and doc[key] is not None and not isinstance(doc[key], kind):
            raise ConfigFormatError(f"{source}: '{key}' has the wrong type")
    for i, mount in enumerate(doc.get("mounts") or []):
        if not isinstance(mount, dict) or not mount.get("device") or not mount.get("target"):
            raise ConfigFormatError(f"{source}: mounts[{i}] needs 'device' and 'target'")
    for i, entry in enumerate(doc.get("files") or []):
        if not isinstance(entry, dict) or not str(entry.get("path", "")).startswith("/"):
            raise ConfigFormatError(f"{source}: files[{i}] needs an absolute 'path'")


def read_config_device(path: str) -> dict[str, Any]:
    """Read and decode the guest-config drive (or file) at ``path``."""
    with open(path, "rb") as dev:
        data = dev.read(MAX_CONFIG_BYTES)
    return decode_config(data, source=path)


def has_magic(path: str) -> bool:
    """Return True when ``path`` starts with the guest-config magic line."""
    try:
        with open(path, "rb") as dev:
            return dev.read(len(MAGIC_PREFIX)) == MAGIC_PREFIX
    except OSError:
        return False


def find_config_device(
    cmdline: str,
    candidates: Iterable[str] | None = None,
) -> str | None:
    """Locate the guest-config drive.

    ``banger.config=/dev/vdX`` on the kernel command line wins; otherwise the
    first of ``candidates`` (default: ``/dev/vd*`` except the root drive)
    that starts with the magic line. Returns None when there is none.
    """
    args = parse_cmdline(cmdline)
    named = args.get("banger.config")
    if named:
        return named
    if candidates is None:
        root = args.get("root", "/dev/vda")
        candidates = [d for d in sorted(glob.glob("/dev/vd*")) if d != root]
        if not candidates:
            candidates = sorted(glob.glob("/dev/vd*"))
    for path in candidates:
        if has_magic(path):
            return path
    return None


def load_config(cmdline: str, candidates: Iterable[str] | None = None) -> dict[str, Any] | None:
    """Find and read the guest config; None (logged) when there is no drive."""
    device = find_config_device(cmdline, candidates)
    if device is None:
        log("no guest-config drive found; booting with defaults")
        return None
    log(f"reading guest config from {device}")
    return read_config_device(device)


# --------------------------------------------------------------------------
# helpers


def root_is_writable(path: str = "/") -> bool:
    """True when the file system holding ``path`` is mounted read-write."""
    try:
        return not os.statvfs(path).f_flag & os.ST_RDONLY
    except OSError:
        return False


def _in_root(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root != "/" else path


def write_file(path: str, content: str | bytes, mode: int = 0o644) -> None:
    """Write ``content`` to ``path`` atomically (temp file + rename) with ``mode``."""
    data = content.encode() if isinstance(content, str) else content
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.banger-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _run(argv: list[str], timeout: float = 60) -> bool:
    """Run a command, logging failure; True on success."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"error: {argv[0]}: {exc}")
        return False
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().replace("\n", " | ")
        log(f"error: {' '.join(argv)} exited {proc.returncode}: {detail}")
        return False
    return True


# --------------------------------------------------------------------------
# applying the configuration


class Applier:
    """Applies a guest-config document to a root directory.

    ``root`` is "/" in a VM; tests point it at a temp directory and turn off
    the steps that need privileges (``system=False``: no sethostname, no
    mount, no ssh-keygen).
    """

    def __init__(self, root: str = "/", *, system: bool = True) -> None:
        self.root = root
        self.system = system
        self.writable = root_is_writable(root)
        self.mounted: list[str] = []
        self.sys_class_net = "/sys/class/net"

    def path(self, path: str) -> str:
        """Map a guest path to the directory being configured."""
        return _in_root(self.root, path)

    # each step ---------------------------------------------------------

    def interface(self, cfg: dict[str, Any]) -> None:
        """Configure the NIC from ``network``: address/prefix, MTU, link up, default route.

        The NIC is found by ``network.mac`` (any name: eth0, enp0s2, ...), else
        by ``network.interface`` (default ``eth0``); it is waited for up to
        :data:`INTERFACE_WAIT_SECONDS` because its driver may load late. An
        interface that already carries the address (the kernel's ``ip=`` on an
        IP_PNP kernel) is accepted as is.
        """
        net = cfg.get("network") or {}
        address = net.get("address")
        if not address:
            return
        prefix = int(net.get("prefix") or 24)
        if not self.system:
            log(f"network {address}/{prefix} (not applied: no system access)")
            return
        name = wait_for_interface(
            net.get("mac"),
            net.get("interface") or "eth0",
            INTERFACE_WAIT_SECONDS,
            self.sys_class_net,
        )
        if name is None:
            log(
                f"error: no network interface {net.get('mac') or net.get('interface') or 'eth0'}"
                f" after {INTERFACE_WAIT_SECONDS:.0f}s (is the virtio_net driver loaded?)"
            )
            return
        have = interface_addresses(name)
        mtu = net.get("mtu")
        if f"{address}/{prefix}" in have:
            log(f"network {name} already configured ({address}/{prefix}); keeping it")
        else:
            log(f"network {name} {address}/{prefix}" + (f" mtu {mtu}" if mtu else ""))
            if mtu:
                _run(["ip", "link", "set", "dev", name, "mtu", str(int(mtu))])
            _run(["ip", "addr", "add", f"{address}/{prefix}", "dev", name])
        _run(["ip", "link", "set", "dev", name, "up"])
        gateway = net.get("gateway")
        if gateway:
            if has_default_route():
                log("default route already set; keeping it")
            else:
                log(f"default route via {gateway}")
                _run(["ip", "route", "replace", "default", "via", gateway, "dev", name])

    def hostname(self, cfg: dict[str, Any]) -> None:
        """Set the hostname and, when the root is writable, /etc/hostname and /etc/hosts."""
        name = cfg.get("hostname")
        if not name:
            return
        log(f"hostname {name}")
        if self.system:
            try:
                socket.sethostname(name)
            except OSError as exc:
                log(f"error: sethostname: {exc}")
        if not self.writable:
            return
        try:
            write_file(self.path("/etc/hostname"), name + "\n")
            write_file(self.path("/etc/hosts"), hosts_file(name))
        except OSError as exc:
            log(f"error: writing /etc/hostname: {exc}")

    def network(self, cfg: dict[str, Any]) -> None:
        """Write the resolver configuration (into /run, /etc/resolv.conf links there)."""
        servers = (cfg.get("network") or {}).get("nameservers") or []
        if not servers:
            return
        text = "".join(f"nameserver {s}\n" for s in servers)
        log(f"nameservers {' '.join(servers)}")
        try:
            write_file(self.path(RESOLV_RUN), text)
        except OSError as exc:
            log(f"error: writing {RESOLV_RUN}: {exc}")
        etc = self.path("/etc/resolv.conf")
        if self.writable and not os.path.islink(etc):
            try:
                write_file(etc, text)
            except OSError as exc:
                log(f"error: writing /etc/resolv.conf: {exc}")

    def mounts(self, cfg: dict[str, Any]) -> None:
        """Mount every entry of ``mounts`` (mkdir -p the target first)."""
        for m in cfg.get("mounts") or []:
            device, target = m["device"], m["target"]
            fstype = m.get("fstype") or "auto"
            options = m.get("options") or "defaults"
            log(f"mount {device} on {target} ({fstype}, {options})")
            try:
                os.makedirs(self.path(target), exist_ok=True)
            except OSError as exc:
                log(f"error: mkdir {target}: {exc}")
                continue
            if not self.system:
                continue
            if _run(["mount", "-n", "-t", fstype, "-o", options, device, self.path(target)]):
                self.mounted.append(self.path(target))

    def files(self, cfg: dict[str, Any]) -> None:
        """Write every entry of ``files`` (content is text; mode is octal text)."""
        for entry in cfg.get("files") or []:
            path = entry["path"]
            mode = int(str(entry.get("mode", "0644")), 8)
            log(f"file {path} ({mode:04o})")
            try:
                write_file(self.path(path), str(entry.get("content", "")), mode)
            except OSError as exc:
                log(f"error: writing {path}: {exc}")

    def authorized_keys(self, cfg: dict[str, Any]) -> None:
        """Install SSH keys for root in /root/.ssh and in /run/banger/ssh.

        The /run copy is listed in sshd's ``AuthorizedKeysFile`` by the image,
        so keys work even when /root is read-only.
        """
        keys = [k.strip() for k in (cfg.get("ssh") or {}).get("authorized_keys") or []]
        keys = [k for k in keys if k]
        if not keys:
            return
        text = "".join(k + "\n" for k in keys)
        log(f"authorized_keys: {len(keys)} key(s) for root")
        run_dir = self.path(SSH_RUN_DIR)
        try:
            os.makedirs(run_dir, mode=0o755, exist_ok=True)
            write_file(os.path.join(run_dir, "authorized_keys"), text, 0o600)
        except OSError as exc:
            log(f"error: writing {SSH_RUN_DIR}/authorized_keys: {exc}")
        ssh_dir = self.path("/root/.ssh")
        try:
            os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
            os.chmod(ssh_dir, 0o700)
            write_file(os.path.join(ssh_dir, "authorized_keys"), text, 0o600)
        except OSError as exc:
            log(
                f"note: /root/.ssh/authorized_keys not written ({exc.strerror}); "
                f"keys are in {SSH_RUN_DIR}/authorized_keys"
            )

    def host_keys(self) -> None:
        """Give sshd Ed25519 and ECDSA host keys: /etc/ssh when writable, else /run.

        Only these two kinds are made (each takes milliseconds; an RSA key
        takes about half a second, which every boot would pay). Keys made in
        /etc/ssh persist on the VM's root disk, so a VM keeps its host keys
        across restarts. sshd is pointed at them by an included drop-in.
        """
        etc_ssh = self.path("/etc/ssh")
        run_dir = self.path(SSH_RUN_DIR)
        os.makedirs(run_dir, mode=0o755, exist_ok=True)
        key_dir = "/etc/ssh" if self.writable else SSH_RUN_DIR
        if not self.writable and glob.glob(os.path.join(etc_ssh, "ssh_host_*_key")):
            log("ssh host keys: using the image's keys (read-only root)")
            return
        lines = []
        made = []
        for kind in HOST_KEY_KINDS:
            key = f"{key_dir}/ssh_host_{kind}_key"
            if self.system and not os.path.exists(self.path(key)):
                _run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", self.path(key)])
                made.append(kind)
            lines.append(f"HostKey {key}\n")
        log(f"ssh host keys in {key_dir}: " + (f"made {', '.join(made)}" if made else "kept"))
        write_file(os.path.join(run_dir, "sshd_config.conf"), "".join(lines))

    def agent(self, cfg: dict[str, Any]) -> int:
        """Write /run/banger/agent.json for the agent; return its vsock port."""
        port = int((cfg.get("agent") or {}).get("vsock_port") or DEFAULT_AGENT_PORT)
        try:
            write_file(self.path(AGENT_CONFIG), json.dumps({"vsock_port": port}) + "\n")
        except OSError as exc:
            log(f"error: writing {AGENT_CONFIG}: {exc}")
        return port

    def apply(self, cfg: dict[str, Any]) -> int:
        """Run every step in order; return the agent's vsock port."""
        try:
            os.makedirs(self.path(RUN_DIR), mode=0o755, exist_ok=True)
        except OSError as exc:
            log(f"error: mkdir {RUN_DIR}: {exc}")
        steps: list[Callable[[dict[str, Any]], Any]] = [
            self.interface,
            self.hostname,
            self.network,
            self.mounts,
            self.files,
            self.authorized_keys,
        ]
        for step in steps:
            try:
                step(cfg)
            except Exception as exc:  # one bad step must not stop the boot
                log(f"error: {step.__name__}: {exc}")
        try:
            self.host_keys()
        except Exception as exc:
            log(f"error: host keys: {exc}")
        return self.agent(cfg)


def find_interface(mac: str | None, name: str, sys_class_net: str = "/sys/class/net") -> str | None:
    """The interface with MAC ``mac`` (case-insensitive), else the one called ``name``."""
    if mac:
        for path in sorted(glob.glob(os.path.join(sys_class_net, "*", "address"))):
            try:
                with open(path) as f:
                    if f.read().strip().lower() == mac.lower():
                        return os.path.basename(os.path.dirname(path))
            except OSError:
                continue
    return name if os.path.exists(os.path.join(sys_class_net, name)) else None


def wait_for_interface(
    mac: str | None, name: str, timeout: float, sys_class_net: str = "/sys/class/net"
) -> str | None:
    """Poll :func:`find_interface` until it finds one or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        found = find_interface(mac, name, sys_class_net)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def _ip_output(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def interface_addresses(name: str) -> set[str]:
    """IPv4 ``address/prefix`` strings on interface ``name`` (from ``ip -o -4 addr``)."""
    found = set()
    for line in _ip_output(["ip", "-o", "-4", "addr", "show", "dev", name]).splitlines():
        words = line.split()
        if "inet" in words:
            found.add(words[words.index("inet") + 1])
    return found


def has_default_route() -> bool:
    """True when an IPv4 default route exists."""
    return bool(_ip_output(["ip", "-4", "route", "show", "default"]).strip())


def load_modules(modules: Iterable[str] = GUEST_MODULES) -> None:
    """``modprobe`` each module (PID-1 mode has no udev to do it); absence is fine.

    Skipped when the guest runs on its host's kernel (the simulator sets
    ``BANGER_GUEST_HOST_KERNEL=1``): loading modules there would change the host.
    """
    if os.environ.get("BANGER_GUEST_HOST_KERNEL") == "1":
        return
    try:
        release = os.uname().release
    except OSError:
        return
    if not os.path.isdir(f"/lib/modules/{release}"):
        log(f"note: no /lib/modules/{release}; not loading {', '.join(modules)}")
        return
    for module in modules:
        try:
            proc = subprocess.run(
                ["modprobe", "-q", module], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log(f"note: modprobe {module}: {exc}")
            continue
        log(f"modprobe {module}: " + ("ok" if proc.returncode == 0 else "not available"))


def hosts_file(hostname: str) -> str:
    """Return an /etc/hosts that resolves ``hostname`` locally."""
    return (
        "127.0.0.1\tlocalhost\n"
        f"127.0.1.1\t{hostname}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
    )


def read_boot_config(
    cmdline_path: str = "/proc/cmdline", candidates: Iterable[str] | None = None
) -> tuple[dict[str, Any], bool]:
    """Read the kernel command line and the guest config.

    Returns ``(config, ok)``; on an unreadable or unsupported config the
    error is printed to the console and an empty config is returned.
    """
    try:
        with open(cmdline_path) as f:
            cmdline = f.read()
    except OSError:
        cmdline = ""
    try:
        cfg = load_config(cmdline, candidates)
    except (ConfigFormatError, OSError) as exc:
        log(f"error: {exc}")
        log("error: guest config NOT applied")
        return {}, False
    return cfg or {}, True


# --------------------------------------------------------------------------
# modes


def systemd_main() -> int:
    """Oneshot mode: apply the configuration and exit (1 when it was unusable)."""
    cfg, ok = read_boot_config()
    Applier("/").apply(cfg)
    log("configuration applied" if ok else "booted without a usable guest config")
    return 0 if ok else 1


def mounts_under(target: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points strictly below ``target``, outermost first."""
    prefix = target.rstrip("/") + "/"
    found: list[str] = []
    try:
        with open(mountinfo) as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(prefix):
                    found.append(point)
    except (OSError, IndexError):
        return []
    found.sort(key=lambda p: p.count("/"))
    top: list[str] = []
    for point in found:
        if not any(point.startswith(t.rstrip("/") + "/") for t in top):
            top.append(point)
    return top


def mount_tmpfs(target: str, mode: str) -> bool:
    """Mount a tmpfs on ``target``, keeping mounts already below it visible.

    The simulator binds its vsock directory at /run/banger-vsock before PID 1
    starts; those mounts are moved onto the new tmpfs (``mount --move``)
    instead of being hidden under it.
    """
    opts = f"mode={mode},nosuid,nodev"
    keep = mounts_under(target)
    with contextlib.suppress(OSError):
        os.makedirs(target, exist_ok=True)
    if not keep:
        return _run(["mount", "-n", "-t", "tmpfs", "-o", opts, "tmpfs", target])
    staging = "/dev/.banger-" + target.strip("/").replace("/", "-")
    try:
        os.makedirs(staging, exist_ok=True)
    except OSError as exc:
        log(f"error: mkdir {staging}: {exc}")
        return False
    if not _run(["mount", "-n", "-t", "tmpfs", "-o", opts, "tmpfs", staging]):
        return False
    for point in keep:
        inner = os.path.join(staging, os.path.relpath(point, target))
        os.makedirs(inner, exist_ok=True)
        if _run(["mount", "-n", "--move", point, inner]):
            log(f"kept {point} on the new {target}")
    ok = _run(["mount", "-n", "--move", staging, target])
    with contextlib.suppress(OSError):
        os.rmdir(staging)
    return ok


LINUX_REBOOT_CMD_CAD_OFF = 0
"""``reboot(2)``: Ctrl-Alt-Del sends SIGINT to PID 1 instead of restarting at once."""
LINUX_REBOOT_CMD_RESTART = 0x01234567
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _reboot(cmd: int) -> bool:
    """Call ``reboot(2)`` with ``cmd`` (PID 1 on a real kernel only); False on failure."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.reboot(ctypes.c_int(cmd)) == 0
    except OSError:
        return False


def prepare_real_init() -> None:
    """What the kernel leaves to PID 1: PATH, /proc, /sys, /dev, lo, Ctrl-Alt-Del as SIGINT."""
    os.environ.setdefault("PATH", DEFAULT_PATH)
    for fstype, target in (("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev")):
        if not os.path.ismount(target):
            with contextlib.suppress(OSError):
                os.makedirs(target, exist_ok=True)
            if _run(["mount", "-n", "-t", fstype, fstype, target]):
                log(f"mounted {fstype} on {target}")
    _run(["ip", "link", "set", "dev", "lo", "up"])
    if not _reboot(LINUX_REBOOT_CMD_CAD_OFF):
        log("error: cannot route Ctrl-Alt-Del to PID 1")


def enabled_services(wants: str = UNIT_WANTS) -> list[tuple[str, list[str]]]:
    """``(name, argv)`` of each enabled ``banger-*.service`` but banger-boot, by name.

    PID-1 mode starts them in systemd's place: plugins ship their guest
    programs as units (the vsock plugin's ``banger-agent``), and the boot
    program needs to know none of them. ``argv`` is the unit's
    ``ExecStart=`` split like a shell would (its ``-@:+!`` prefixes dropped).
    """
    found = []
    for path in sorted(glob.glob(os.path.join(wants, "banger-*.service"))):
        name = os.path.basename(path)[: -len(".service")]
        if name == "banger-boot":
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            log(f"error: {path}: {exc}")
            continue
        for line in lines:
            key, _, value = line.strip().partition("=")
            if key.strip() == "ExecStart" and value.strip():
                try:
                    argv = shlex.split(value.strip().lstrip("-@:+!"))
                except ValueError as exc:
                    log(f"error: {path}: ExecStart: {exc}")
                    break
                if argv:
                    found.append((name, argv))
                break
    return found


class Init:
    """PID-1 mode: supervise sshd and the image's banger units (simulated guest or real kernel)."""

    def __init__(self, real_kernel: bool = False) -> None:
        self.children: dict[int, tuple[str, subprocess.Popen]] = {}
        self.mounted: list[str] = []
        self.stopping = False
        self.real_kernel = real_kernel
        self.rfd, self.wfd = os.pipe()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM) and not self.stopping:
            self.stopping = True
            log(f"received {signal.Signals(signum).name}: shutting down")

    def start(self, name: str, argv: list[str]) -> None:
        """Start a supervised child whose output goes to the console."""
        log(f"starting {name}: {' '.join(argv)}")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            log(f"error: cannot start {name}: {exc}")
            return
        self.children[proc.pid] = (name, proc)

    def reap(self) -> None:
        """Collect every exited child (ours and orphans re-parented to PID 1)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                name, proc = self.children.pop(pid)
                proc.returncode = os.waitstatus_to_exitcode(status)
                if not self.stopping:
                    log(f"{name} exited with status {proc.returncode}")

    def wait_for_signal(self) -> None:
        """Sleep until a signal arrives (wakeup fd), reaping as children exit."""
        while not self.stopping:
            with contextlib.suppress(InterruptedError):
                ready, _, _ = select.select([self.rfd], [], [], 5.0)
                if ready:
                    os.read(self.rfd, 512)
            self.reap()

    def stop_children(self) -> None:
        """SIGTERM the children (and, as PID 1, every process), then SIGKILL leftovers."""
        for _name, proc in list(self.children.values()):
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
        if os.getpid() == 1:
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            self.reap()
            if not self.children and not self._others_alive():
                break
            time.sleep(0.05)
        for _name, proc in list(self.children.values()):
            with contextlib.suppress(OSError):
                proc.kill()
        if os.getpid() == 1:
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGKILL)
        time.sleep(0.05)
        self.reap()

    def _others_alive(self) -> bool:
        if os.getpid() != 1:
            return False
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        return True

    def boot(self) -> None:
        """Mount /run and /tmp, apply the config, start sshd and the enabled banger units."""
        for target, mode in (("/run", "0755"), ("/tmp", "1777")):
            if mount_tmpfs(target, mode):
                self.mounted.append(target)
                log(f"mounted tmpfs on {target}")
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        except OSError as exc:
            log(f"error: mkdir /run/sshd: {exc}")
        load_modules()
        cfg, _ok = read_boot_config()
        applier = Applier("/")
        try:
            applier.apply(cfg)
        finally:
            self.mounted.extend(applier.mounted)
        if not self.stopping:
            self.start("sshd", ["/usr/sbin/sshd", "-D", "-e"])
            for name, argv in enabled_services():
                self.start(name, argv)
            log("boot complete")

    def run(self) -> int:
        """Boot, supervise until SIGINT/SIGTERM, shut down; returns 0."""
        os.set_blocking(self.wfd, False)
        signal.set_wakeup_fd(self.wfd)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        if self.real_kernel:
            log("starting (PID-1 mode on the guest's own kernel)")
            prepare_real_init()
        else:
            log("starting (simulated guest, PID-1 mode)")
        try:
            self.boot()
        except Exception as exc:  # PID 1 must not die: the VM would be over
            log(f"error: boot failed: {exc!r}; waiting for shutdown")
        self.wait_for_signal()
        self.stop_children()
        os.sync()
        log("synced file systems")
        for target in reversed(self.mounted):
            if _run(["umount", "-n", "-R", target]) or _run(["umount", "-n", "-l", target]):
                log(f"unmounted {target}")
        if self.real_kernel:
            _run(["mount", "-n", "-o", "remount,ro", "/"])
            os.sync()
            log("rebooting")
            _reboot(LINUX_REBOOT_CMD_RESTART)
            while True:  # PID 1 must not exit (the kernel would panic)
                time.sleep(60)
        log("halted")
        return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``banger-boot [--systemd | --print-config DEVICE]``."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--systemd"]:
        return systemd_main()
    if args[:1] == ["--print-config"] and len(args) == 2:
        try:
            print(json.dumps(read_config_device(args[1]), indent=2))
        except (ConfigFormatError, OSError) as exc:
            log(f"error: {exc}")
            return 1
        return 0
    if os.environ.get("BANGER_GUEST_SIMULATED") == "1":
        return Init().run()
    if os.getpid() == 1:  # init=/usr/lib/banger/banger-boot on a real kernel
        return Init(real_kernel=True).run()
    print(
        "usage: banger-boot --systemd | --print-config DEVICE "
        "(PID-1 mode: as the kernel's init, or with BANGER_GUEST_SIMULATED=1)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
