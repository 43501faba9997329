"""The simulated VMM: Firecracker's API routes, validation and pre/post-boot rules.

Routing mirrors ``parsed_request.rs``; validation mirrors the ``vmm_config``
structs (serde ``deny_unknown_fields``), and resources are opened when the PUT
arrives (kernel, initrd, drives, TAP devices, the vsock socket, log and
metrics files), as Firecracker does. ``InstanceStart`` hands the result to
:mod:`banger_fcsim.guest`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from banger_vmmkit import metrics_schema
from banger_vmmkit import serde as sd
from banger_vmmkit.errno_text import io_error
from banger_vmmkit.httpserver import Request, Response
from banger_vmmkit.kernelcheck import check_kernel_image
from banger_vmmkit.log import Logger, parse_level

VMM_VERSION = "1.16.1"
DEFAULT_KERNEL_CMDLINE = (
    "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd "
    "swiotlb=noforce"
)
CMDLINE_MAX = 2048

HOTPLUG_UNSUPPORTED = "Memory hotplug config error: Memory hotplug is not supported by banger-fcsim"
NOT_AFTER = "The requested operation is not supported after starting the microVM."
NOT_BEFORE = "The requested operation is not supported before starting the microVM."

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

# ----------------------------------------------------------------------------- schemas

TOKEN_BUCKET = sd.struct(
    "TokenBucketConfig",
    [("size", sd.U64), ("one_time_burst", sd.opt(sd.U64)), ("refill_time", sd.U64)],
)
RATE_LIMITER = sd.struct(
    "RateLimiterConfig", [("bandwidth", sd.opt(TOKEN_BUCKET)), ("ops", sd.opt(TOKEN_BUCKET))]
)
BOOT_SOURCE = sd.struct(
    "BootSourceConfig",
    [("kernel_image_path", sd.STR), ("initrd_path", sd.opt(sd.STR)), ("boot_args", sd.opt(sd.STR))],
)
CPU_TEMPLATE = sd.enum("StaticCpuTemplate", "C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None")
HUGE_PAGES = sd.enum("HugePageConfig", "None", "Transparent", "2M")
_MACHINE_FIELDS = [
    ("vcpu_count", sd.U8),
    ("mem_size_mib", sd.USIZE),
    ("smt", sd.opt(sd.BOOL)),
    ("cpu_template", sd.opt(CPU_TEMPLATE)),
    ("track_dirty_pages", sd.opt(sd.BOOL)),
    ("huge_pages", sd.opt(HUGE_PAGES)),
]
MACHINE_CONFIG = sd.struct("MachineConfig", _MACHINE_FIELDS)
MACHINE_CONFIG_UPDATE = sd.struct(
    "MachineConfigUpdate", [(n, t if t.kind == "option" else sd.opt(t)) for n, t in _MACHINE_FIELDS]
)
CACHE_TYPE = sd.enum("CacheType", "Unsafe", "Writeback")
IO_ENGINE = sd.enum("FileEngineType", "Async", "Sync")
DRIVE = sd.struct(
    "BlockDeviceConfig",
    [
        ("drive_id", sd.STR),
        ("partuuid", sd.opt(sd.STR)),
        ("is_root_device", sd.BOOL),
        ("cache_type", sd.opt(CACHE_TYPE)),
        ("is_read_only", sd.opt(sd.BOOL)),
        ("path_on_host", sd.opt(sd.STR)),
        ("rate_limiter", sd.opt(RATE_LIMITER)),
        ("io_engine", sd.opt(IO_ENGINE)),
        ("socket", sd.opt(sd.STR)),
    ],
)
DRIVE_UPDATE = sd.struct(
    "BlockDeviceUpdateConfig",
    [
        ("drive_id", sd.STR),
        ("path_on_host", sd.opt(sd.STR)),
        ("rate_limiter", sd.opt(RATE_LIMITER)),
    ],
)
NET = sd.struct(
    "NetworkInterfaceConfig",
    [
        ("iface_id", sd.STR),
        ("host_dev_name", sd.STR),
        ("guest_mac", sd.opt(sd.STR)),
        ("rx_rate_limiter", sd.opt(RATE_LIMITER)),
        ("tx_rate_limiter", sd.opt(RATE_LIMITER)),
        ("mtu", sd.opt(sd.U16)),
    ],
)
NET_UPDATE = sd.struct(
    "NetworkInterfaceUpdateConfig",
    [
        ("iface_id", sd.STR),
        ("rx_rate_limiter", sd.opt(RATE_LIMITER)),
        ("tx_rate_limiter", sd.opt(RATE_LIMITER)),
    ],
)
VSOCK = sd.struct(
    "VsockDeviceConfig",
    [("vsock_id", sd.opt(sd.STR)), ("guest_cid", sd.U32), ("uds_path", sd.STR)],
)
LEVEL = sd.enum("Level", "Off", "Trace", "Debug", "Info", "Warn", "Error")
LOGGER = sd.struct(
    "LoggerConfig",
    [
        ("log_path", sd.opt(sd.STR)),
        ("level", sd.opt(sd.STR)),
        ("show_level", sd.opt(sd.BOOL)),
        ("show_log_origin", sd.opt(sd.BOOL)),
        ("module", sd.opt(sd.STR)),
    ],
)
METRICS = sd.struct(
    "MetricsConfig",
    [("metrics_path", sd.STR), ("emit_id", sd.opt(sd.BOOL)), ("properties", sd.opt(sd.STR_MAP))],
    deny_unknown=False,
)
ACTION = sd.struct(
    "ActionBody",
    [("action_type", sd.enum("ActionType", "FlushMetrics", "InstanceStart", "SendCtrlAltDel"))],
)
VM_STATE = sd.struct("Vm", [("state", sd.enum("VmState", "Paused", "Resumed"))])
SERIAL = sd.struct(
    "SerialConfig", [("serial_out_path", sd.opt(sd.STR)), ("rate_limiter", sd.opt(TOKEN_BUCKET))]
)
ENTROPY = sd.struct("EntropyDeviceConfig", [("rate_limiter", sd.opt(RATE_LIMITER))])
BALLOON = sd.struct(
    "BalloonDeviceConfig",
    [
        ("amount_mib", sd.U32),
        ("deflate_on_oom", sd.BOOL),
        ("stats_polling_interval_s", sd.opt(sd.U16)),
        ("free_page_hinting", sd.opt(sd.BOOL)),
        ("free_page_reporting", sd.opt(sd.BOOL)),
    ],
)
MMDS_CONFIG = sd.struct(
    "MmdsConfig",
    [
        ("version", sd.opt(sd.enum("MmdsVersion", "V1", "V2"))),
        ("network_interfaces", sd.seq(sd.STR)),
        ("ipv4_address", sd.opt(sd.STR)),
        ("imds_compat", sd.opt(sd.BOOL)),
    ],
)

MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
ID_RE = re.compile(r"^\w+$")


HINTING_START = sd.struct("StartHintingCmd", [("acknowledge_on_stop", sd.opt(sd.BOOL))])
PMEM_UPDATE = sd.struct(
    "PmemDeviceUpdateConfig", [("id", sd.STR), ("rate_limiter", sd.opt(RATE_LIMITER))]
)
MMDS_LIMIT_EXCEEDED = "MMDS limit exceeded error: The MMDS patch request doesn't fit."
"""fc ``VmmActionError::MmdsLimitExceeded(DataStoreLimitExceeded)`` @ v1.16.1 (HTTP 413)."""


class ApiError(Exception):
    """A request error with a fault message (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _compact(data: Any) -> bytes:
    """serde_json::to_string: compact, UTF-8."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _serde(body: bytes, t: sd.T) -> dict[str, Any]:
    try:
        parsed: dict[str, Any] = sd.from_slice(body, t)
        return parsed
    except sd.SerdeError as exc:
        raise ApiError(
            f"An error occurred when deserializing the json body of a request: {exc}."
        ) from None


def checked_id(raw: str | None) -> str:
    """Firecracker's ``checked_id``: non-empty, alphanumeric or underscore."""
    if raw is None or raw == "":
        raise ApiError("The ID cannot be empty.")
    if not ID_RE.match(raw):
        raise ApiError("API Resource IDs can only contain alphanumeric characters and underscores.")
    return raw


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def open_tap(name: str) -> int:
    """Open an existing TAP device like Firecracker (TUNSETIFF, IFF_TAP|IFF_NO_PI)."""
    if not name or len(name.encode()) >= 16:
        raise ApiError(
            "Network config error: Could not create the network device: Open tap device failed: "
            "Invalid interface name"
        )
    prefix = "Network config error: Could not create the network device: Open tap device failed: "
    backend = (
        f". Invalid TUN/TAP Backend provided by {name}. "
        "Check our documentation on setting up the network devices."
    )
    if not os.path.exists(f"/sys/class/net/{name}"):
        err = OSError(19, os.strerror(19))
        raise ApiError(f"{prefix}Error while creating ifreq structure: {io_error(err)}{backend}")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ApiError(f"{prefix}Couldn't open /dev/net/tun: {io_error(exc)}") from None
    ifreq = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI)
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifreq)
    except OSError as exc:
        os.close(fd)
        raise ApiError(
            f"{prefix}Error while creating ifreq structure: {io_error(exc)}{backend}"
        ) from None
    return fd


@dataclass
class DriveState:
    """One configured block device and its open backing file."""

    config: dict[str, Any]
    fd: int | None

    @property
    def drive_id(self) -> str:
        return str(self.config["drive_id"])

    @property
    def path(self) -> str:
        return self.config.get("path_on_host") or ""

    @property
    def read_only(self) -> bool:
        return bool(self.config.get("is_read_only"))

    @property
    def is_root(self) -> bool:
        return bool(self.config.get("is_root_device"))


@dataclass
class NetState:
    """One network interface and its open TAP fd."""

    config: dict[str, Any]
    tap_fd: int | None

    @property
    def iface_id(self) -> str:
        return str(self.config["iface_id"])


@dataclass
class VsockState:
    """The vsock device and its bound host socket."""

    config: dict[str, Any]
    listener: socket.socket | None

    @property
    def uds_path(self) -> str:
        return str(self.config["uds_path"])


@dataclass
class VmmOptions:
    """Process options that the API layer needs."""

    instance_id: str = "anonymous-instance"
    enable_pci: bool = False
    metrics_from_cli: bool = False
    version: str = VMM_VERSION
    """The emulated Firecracker version (:mod:`banger_vmmkit.emulation`)."""
    mmds_size_limit: int = 51200
    """``--mmds-size-limit`` (default ``--http-api-max-payload-size``, 51200)."""


@dataclass
class Vmm:
    """All pre-boot configuration plus the running guest (after InstanceStart)."""

    opts: VmmOptions
    logger: Logger
    guest_factory: Callable[[Vmm], Any] | None = None
    state: str = "Not started"
    machine: dict[str, Any] = field(
        default_factory=lambda: {
            "vcpu_count": 1,
            "mem_size_mib": 128,
            "smt": False,
            "track_dirty_pages": False,
            "huge_pages": "None",
        }
    )
    boot_source: dict[str, Any] | None = None
    kernel_fd: int | None = None
    initrd_fd: int | None = None
    loaded_kernel: Any = None
    """``banger_core.images.kernelload.LoadedKernel`` once InstanceStart loaded the kernel."""
    drives: list[DriveState] = field(default_factory=list)
    nets: list[NetState] = field(default_factory=list)
    vsock: VsockState | None = None
    logger_config: dict[str, Any] | None = None
    metrics_config: dict[str, Any] | None = None
    metrics_fd: int | None = None
    serial_config: dict[str, Any] | None = None
    serial_fd: int | None = None
    balloon: dict[str, Any] | None = None
    entropy: dict[str, Any] | None = None
    mmds: Any = None
    mmds_config: dict[str, Any] | None = None
    cpu_config: Any = None
    guest: Any = None
    started_at: float = field(default_factory=time.monotonic)
    hint_host_cmd: int = 0
    """The last free page hinting command sent to the guest (FREE_PAGE_HINT_STOP = 0)."""
    hint_last_cmd: int = 1

    # ------------------------------------------------------------------ dispatch

    @property
    def booted(self) -> bool:
        """True after a successful InstanceStart."""
        return self.state != "Not started"

    def handle(self, req: Request) -> Response:
        """Serve one API request (never raises)."""
        desc = f"{req.method.capitalize()} request on {json.dumps(req.path)}"
        if req.body is not None:
            desc += f" with body {json.dumps(req.body.decode(errors='replace'))}"
        self.logger.info(f"The API server received a {desc}.", "fc_api")
        try:
            resp = self._route(req)
        except ApiError as exc:
            reason = "Payload too large" if exc.status == 413 else "Bad Request"
            self.logger.error(
                f"Received Error. Status code: {exc.status} {reason}. Message: {exc.message}",
                "fc_api",
            )
            return Response(exc.status, _compact({"fault_message": exc.message}))
        if resp.status == 204:
            self.logger.info(
                "The request was executed successfully. Status code: 204 No Content.", "fc_api"
            )
        elif resp.status == 200:
            self.logger.info(
                "The request was executed successfully. Status code: 200 OK.", "fc_api"
            )
        return resp

    def _route(self, req: Request) -> Response:
        tokens = [t for t in req.path.lstrip("/").split("/")]
        if tokens and tokens[-1] == "" and len(tokens) > 1:
            tokens = tokens[:-1]  # split_terminator drops one trailing empty piece
        path = tokens[0] if tokens else ""
        sub = tokens[1] if len(tokens) > 1 else None
        m, body = req.method, req.body
        if m == "GET":
            if body is None:
                if path == "":
                    return self._json(self.instance_info())
                if path == "version":
                    return self._json({"firecracker_version": self.opts.version})
                if path == "vm" and sub == "config":
                    return self._json(self.full_config())
                if path == "machine-config":
                    return self._json(self.machine_json())
                if path == "mmds":
                    return self._json({} if self.mmds is None else self.mmds)
                if path == "balloon":
                    return self.get_balloon(sub, tokens[2:])
                if path == "hotplug" and sub == "memory":
                    raise ApiError(HOTPLUG_UNSUPPORTED)
            else:
                raise ApiError("GET request cannot have a body.")
        elif m == "PUT":
            if body is None:
                raise ApiError("Empty PUT request.")
            handler = {
                "actions": self.put_actions,
                "balloon": self.put_balloon,
                "boot-source": self.put_boot_source,
                "cpu-config": self.put_cpu_config,
                "logger": self.put_logger,
                "serial": self.put_serial,
                "machine-config": self.put_machine_config,
                "metrics": self.put_metrics,
                "vsock": self.put_vsock,
                "entropy": self.put_entropy,
            }.get(path)
            if handler is not None:
                return handler(body)
            if path == "drives":
                return self.put_drive(body, sub)
            if path == "network-interfaces":
                return self.put_net(body, sub)
            if path == "mmds":
                return self.put_mmds(body, sub)
            if path == "pmem":
                checked_id(sub)
                raise ApiError("Pmem device error: pmem devices are not simulated by banger-fcsim")
            if path == "snapshot":
                return self.put_snapshot(body, sub)
            if path == "hotplug" and sub == "memory":
                self._preboot()
                raise ApiError(HOTPLUG_UNSUPPORTED)
        elif m == "PATCH":
            if path == "balloon" and sub == "hinting":
                return self.patch_balloon_hinting(body, tokens[2] if len(tokens) > 2 else None)
            if path == "balloon":
                return self.patch_balloon(body, sub)
            if body is None:
                raise ApiError("Empty PATCH request.")
            if path == "drives":
                return self.patch_drive(body, sub)
            if path == "machine-config":
                return self.patch_machine_config(body)
            if path == "mmds":
                return self.patch_mmds(body)
            if path == "network-interfaces":
                return self.patch_net(body, sub)
            if path == "vm":
                return self.patch_vm(body)
            if path == "pmem":
                return self.patch_pmem(body, sub)
        elif m == "DELETE":
            # fc parsed_request.rs @ v1.16.1: DELETE /drives|pmem|network-interfaces/{id}
            # (hot-unplug); a body makes it method_to_error(Delete).
            if body is not None:
                raise ApiError("Empty Delete request.")
            if path in ("drives", "pmem", "network-interfaces"):
                return self.delete_device(path, sub)
        raise ApiError(f"Invalid request method and/or path: {m} {path}.")

    @staticmethod
    def _json(data: Any) -> Response:
        return Response(200, _compact(data))

    @staticmethod
    def _ok(deprecation: bool = False) -> Response:
        return Response(204, None, deprecation)

    def _preboot(self) -> None:
        if self.booted:
            raise ApiError(NOT_AFTER)

    def _postboot(self) -> None:
        if not self.booted:
            raise ApiError(NOT_BEFORE)

    # ------------------------------------------------------------------ GETs

    def instance_info(self) -> dict[str, Any]:
        """``GET /`` body."""
        return {
            "id": self.opts.instance_id,
            "state": self.state,
            "vmm_version": self.opts.version,
            "app_name": "Firecracker",
        }

    def machine_json(self) -> dict[str, Any]:
        """``GET /machine-config`` body (``cpu_template`` only when set)."""
        out = {
            "vcpu_count": self.machine["vcpu_count"],
            "mem_size_mib": self.machine["mem_size_mib"],
            "smt": self.machine["smt"],
        }
        if self.machine.get("cpu_template") not in (None,):
            out["cpu_template"] = self.machine["cpu_template"]
        out["track_dirty_pages"] = self.machine["track_dirty_pages"]
        out["huge_pages"] = self.machine["huge_pages"]
        return out

    def full_config(self) -> dict[str, Any]:
        """``GET /vm/config`` body."""
        drives = []
        for d in self.drives:
            c = d.config
            drives.append(
                {
                    "drive_id": c["drive_id"],
                    "partuuid": c.get("partuuid"),
                    "is_root_device": c["is_root_device"],
                    "cache_type": c.get("cache_type") or "Unsafe",
                    "is_read_only": bool(c.get("is_read_only")),
                    "path_on_host": c.get("path_on_host"),
                    "rate_limiter": c.get("rate_limiter"),
                    "io_engine": c.get("io_engine") or "Sync",
                    "socket": None,
                }
            )
        nets = []
        for n in self.nets:
            c = n.config
            nets.append(
                {
                    "iface_id": c["iface_id"],
                    "host_dev_name": c["host_dev_name"],
                    "guest_mac": c.get("guest_mac"),
                    "mtu": c.get("mtu"),
                    "rx_rate_limiter": c.get("rx_rate_limiter"),
                    "tx_rate_limiter": c.get("tx_rate_limiter"),
                }
            )
        # Before PUT /boot-source upstream serializes BootSourceConfig::default().
        boot: dict[str, Any] = {"kernel_image_path": "", "initrd_path": None, "boot_args": None}
        if self.boot_source is not None:
            boot = {
                "kernel_image_path": self.boot_source["kernel_image_path"],
                "initrd_path": self.boot_source.get("initrd_path"),
                "boot_args": self.boot_source.get("boot_args"),
            }
        vsock = None
        if self.vsock is not None:
            vsock = {"guest_cid": self.vsock.config["guest_cid"], "uds_path": self.vsock.uds_path}
        # fc src/vmm/src/resources.rs @ v1.16.1 `impl From<&VmResources> for VmmConfig`:
        # cpu_config, logger and metrics are always None; pmem and memory-hotplug are
        # there (no pmem device or memory hotplug is simulated: [] and null).
        return {
            "balloon": self.balloon,
            "drives": drives,
            "boot-source": boot,
            "cpu-config": None,
            "logger": None,
            "machine-config": self.machine_json(),
            "metrics": None,
            "mmds-config": self.mmds_config,
            "network-interfaces": nets,
            "vsock": vsock,
            "entropy": self.entropy,
            "pmem": [],
            "memory-hotplug": None,
        }

    def get_balloon(self, sub: str | None, rest: list[str]) -> Response:
        """``GET /balloon[/statistics|/hinting/status]`` (fc ``request/balloon.rs`` @ v1.16.1)."""
        if sub == "hinting":
            what = rest[0] if rest else None
            if what != "status":
                raise ApiError(f"Unrecognized GET request path `/hinting/{what or ''}`.")
            self._postboot()
            return self._json(self._hinting("status"))
        if sub is not None and sub != "statistics":
            raise ApiError(f"Unrecognized GET request path `{sub}`.")
        if self.balloon is None:
            raise ApiError("Balloon config error: No balloon device found.")
        if sub == "statistics":
            raise ApiError(
                "Balloon config error: Statistics for the balloon device are not enabled"
            )
        return self._json(self.balloon)

    def _hinting(self, action: str, body: bytes | None = None) -> dict[str, Any]:
        """Free page hinting (fc ``devices/virtio/balloon/device.rs`` @ v1.16.1).

        ``start`` sends a new command id (2, 3, ...), ``stop`` sends DONE (1);
        the simulated guest has no balloon driver, so ``guest_cmd`` stays null.
        """
        if self.balloon is None:
            raise ApiError(
                "Balloon update error: Failed perform action on device: Device not found"
            )
        if not self.balloon.get("free_page_hinting"):
            raise ApiError(
                "Balloon update error: Balloon: Attempting to use hinting when not enabled"
            )
        if action == "start":
            if body is not None and body.strip():
                _serde(body, HINTING_START)
            self.hint_last_cmd = max(2, self.hint_last_cmd + 1)
            self.hint_host_cmd = self.hint_last_cmd
        elif action == "stop":
            self.hint_host_cmd = 1  # FREE_PAGE_HINT_DONE
        return {"host_cmd": self.hint_host_cmd, "guest_cmd": None}

    # ------------------------------------------------------------------ pre-boot PUTs

    def put_boot_source(self, body: bytes) -> Response:
        cfg = _serde(body, BOOT_SOURCE)
        self._preboot()
        args = cfg.get("boot_args")
        if args is not None and len(args.encode()) >= CMDLINE_MAX:
            raise ApiError(
                "Boot source error: The kernel command line is invalid: Command line overflowed."
            )
        try:
            kfd = os.open(cfg["kernel_image_path"], os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ApiError(
                f"Boot source error: The kernel file cannot be opened: {io_error(exc)}"
            ) from None
        ifd = None
        if cfg.get("initrd_path") is not None:
            try:
                ifd = os.open(cfg["initrd_path"], os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                os.close(kfd)
                raise ApiError(
                    f"Boot source error: The initrd file cannot be opened: {io_error(exc)}"
                ) from None
        _close(self.kernel_fd)
        _close(self.initrd_fd)
        self.kernel_fd, self.initrd_fd = kfd, ifd
        self.boot_source = cfg
        return self._ok()

    def _validate_machine(self, m: dict[str, Any]) -> None:
        vcpus = m["vcpu_count"]
        if vcpus == 0 or vcpus > 32 or (m["smt"] and vcpus > 1 and vcpus % 2 == 1):
            raise ApiError(
                "Machine config error: The number of vCPUs must be greater than 0, less than 32 "
                "and must be 1 or an even number if SMT is enabled."
            )
        mem = m["mem_size_mib"]
        if mem == 0 or (m["huge_pages"] in ("2M",) and mem % 2):
            raise ApiError(
                "Machine config error: The memory size (MiB) is either 0, or not a multiple of "
                "the configured page size."
            )

    def put_machine_config(self, body: bytes) -> Response:
        cfg = _serde(body, MACHINE_CONFIG)
        self._preboot()
        new = {
            "vcpu_count": cfg["vcpu_count"],
            "mem_size_mib": cfg["mem_size_mib"],
            "smt": bool(cfg.get("smt") or False),
            "track_dirty_pages": bool(cfg.get("track_dirty_pages") or False),
            "huge_pages": cfg.get("huge_pages") or "None",
        }
        tmpl = cfg.get("cpu_template")
        if tmpl is not None and tmpl != "None":
            new["cpu_template"] = tmpl
        self._validate_machine(new)
        self.machine = new
        return self._ok(deprecation="cpu_template" in cfg)

    def patch_machine_config(self, body: bytes) -> Response:
        cfg = _serde(body, MACHINE_CONFIG_UPDATE)
        if not any(v is not None for v in cfg.values()):
            raise ApiError("Empty PATCH request.")
        self._preboot()
        new = dict(self.machine)
        for key, value in cfg.items():
            if value is None:
                continue
            if key == "cpu_template":
                if value == "None":
                    new.pop("cpu_template", None)
                else:
                    new["cpu_template"] = value
            else:
                new[key] = value
        self._validate_machine(new)
        self.machine = new
        return self._ok(deprecation="cpu_template" in cfg)

    def put_drive(self, body: bytes, sub: str | None) -> Response:
        drive_id = checked_id(sub)
        cfg = _serde(body, DRIVE)
        if drive_id != cfg["drive_id"]:
            raise ApiError("The id from the path does not match the id from the body!")
        if self.booted:
            self._hotplug()
        position = next((i for i, d in enumerate(self.drives) if d.drive_id == drive_id), None)
        has_root = bool(self.drives) and self.drives[0].is_root
        if cfg["is_root_device"] and has_root and position != 0:
            raise ApiError("Drive config error: A root block device already exists!")
        if cfg.get("socket") is not None:
            raise ApiError(
                "Drive config error: Unable to create the vhost-user block device: "
                "vhost-user block devices are not simulated by banger-fcsim"
            )
        path = cfg.get("path_on_host")
        if path is None:
            raise ApiError(
                "Drive config error: Unable to create the virtio block device: Virtio backend "
                "error: Error manipulating the backing file: No such file or directory "
                "(os error 2) "
            )
        flags = os.O_RDONLY if cfg.get("is_read_only") else os.O_RDWR
        try:
            fd = os.open(path, flags | os.O_CLOEXEC)
        except OSError as exc:
            raise ApiError(
                "Drive config error: Unable to create the virtio block device: Virtio backend "
                f"error: Error manipulating the backing file: {io_error(exc)} {path}"
            ) from None
        state = DriveState(cfg, fd)
        if position is None:
            if cfg["is_root_device"]:
                self.drives.insert(0, state)
            else:
                self.drives.append(state)
        else:
            _close(self.drives[position].fd)
            self.drives[position] = state
            if position != 0 and cfg["is_root_device"]:
                self.drives[0], self.drives[position] = self.drives[position], self.drives[0]
        return self._ok()

    def _hotplug(self) -> None:
        if not self.opts.enable_pci:
            raise ApiError("The requested operation is not supported: PCI is not enabled")
        raise ApiError(
            "The requested operation is not supported: device hotplug is not simulated by "
            "banger-fcsim"
        )

    def put_net(self, body: bytes, sub: str | None) -> Response:
        iface_id = checked_id(sub)
        cfg = _serde(body, NET)
        if iface_id != cfg["iface_id"]:
            raise ApiError(
                f"The id from the path [{iface_id}] does not match the id from the body "
                f"[{cfg['iface_id']}]!"
            )
        if self.booted:
            self._hotplug()
        mac = cfg.get("guest_mac")
        if mac is not None:
            if not MAC_RE.match(mac):
                raise ApiError(
                    "An error occurred when deserializing the json body of a request: "
                    f"invalid value: string {json.dumps(mac)}, expected MAC address."
                )
            mac = mac.lower()
            cfg["guest_mac"] = mac
            for other in self.nets:
                if other.iface_id != iface_id and other.config.get("guest_mac") == mac:
                    raise ApiError(
                        f"Network config error: The MAC address is already in use: {mac}"
                    )
        position = next((i for i, n in enumerate(self.nets) if n.iface_id == iface_id), None)
        if position is not None:
            old = self.nets.pop(position)
            _close(old.tap_fd)
        fd = open_tap(cfg["host_dev_name"])
        state = NetState(cfg, fd)
        if position is None:
            self.nets.append(state)
        else:
            self.nets.insert(position, state)
        return self._ok()

    def put_vsock(self, body: bytes) -> Response:
        cfg = _serde(body, VSOCK)
        self._preboot()
        if self.vsock is not None:
            old = self.vsock
            if old.listener is not None:
                old.listener.close()
            with contextlib.suppress(OSError):
                os.unlink(old.uds_path)
            self.vsock = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(cfg["uds_path"])
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ApiError(
                "Vsock config error: Cannot create backend for vsock device: Error binding to the "
                f"host-side Unix socket: {io_error(exc)}"
            ) from None
        os.set_inheritable(sock.fileno(), False)
        self.vsock = VsockState(cfg, sock)
        return self._ok(deprecation=cfg.get("vsock_id") is not None)

    def put_logger(self, body: bytes) -> Response:
        cfg = _serde(body, LOGGER)
        self._preboot()
        level = None
        if cfg.get("level") is not None:
            level = parse_level(cfg["level"])
            if level is None:
                raise ApiError(
                    "An error occurred when deserializing the json body of a request: "
                    f"unknown variant `{cfg['level']}`, expected one of `Off`, `Trace`, `Debug`, "
                    "`Info`, `Warn`, `Error`."
                )
        fd = None
        if cfg.get("log_path") is not None:
            try:
                fd = os.open(
                    cfg["log_path"],
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC,
                    0o644,
                )
            except OSError as exc:
                raise ApiError(
                    f"Logger error: Failed to open target file: {io_error(exc)}"
                ) from None
        self.logger.configure(fd, level, cfg.get("show_level"), cfg.get("show_log_origin"))
        self.logger_config = {
            "log_path": cfg.get("log_path"),
            "level": cfg.get("level"),
            "show_level": cfg.get("show_level"),
            "show_log_origin": cfg.get("show_log_origin"),
            "module": cfg.get("module"),
        }
        return self._ok()

    def put_metrics(self, body: bytes) -> Response:
        cfg = _serde(body, METRICS)
        self._preboot()
        if self.metrics_fd is not None or self.opts.metrics_from_cli:
            raise ApiError(
                "Metrics error: Cannot initialize the metrics system due to bad user input: "
                "Reinitialization of metrics not allowed."
            )
        self.init_metrics(cfg)
        return self._ok()

    def init_metrics(self, cfg: dict[str, Any]) -> None:
        """Open the metrics file (``--metrics-path`` or ``PUT /metrics``)."""
        try:
            fd = os.open(
                cfg["metrics_path"],
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC,
                0o644,
            )
        except OSError as exc:
            raise ApiError(
                "Metrics error: Cannot initialize the metrics system due to bad user input: "
                f"{io_error(exc)}"
            ) from None
        self.metrics_fd = fd
        self.metrics_config = {"metrics_path": cfg["metrics_path"]}

    def write_metrics(self) -> None:
        """Append one metrics line (what FlushMetrics and the periodic timer do)."""
        if self.metrics_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.metrics_fd, (json.dumps(self.metrics_line()) + "\n").encode())

    def metrics_line(self) -> dict[str, Any]:
        """One flush, shaped as v1.16.1's ``FirecrackerMetrics`` serializes.

        Groups in upstream's order (``src/vmm/src/logger/metrics.rs``): per-device
        ``block_<id>`` / ``net_<iface>`` before their aggregates, legacy devices
        ``i8042`` and ``uart`` (x86_64). Counters are the stand-in's: zero (it
        counts no guest exits, interrupts or API requests).
        """
        g = metrics_schema.GROUPS

        def fresh(group: str) -> dict[str, Any]:
            copy: dict[str, Any] = json.loads(json.dumps(g[group]))
            return copy

        line: dict[str, Any] = {"utc_timestamp_ms": int(time.time() * 1000)}
        line["api_server"] = fresh("api_server")
        line["balloon"] = fresh("balloon")
        for d in self.drives:
            line[f"block_{d.config['drive_id']}"] = fresh("block")
        line["block"] = fresh("block")
        line["deprecated_api"] = fresh("deprecated_api")
        line["get_api_requests"] = fresh("get_api_requests")
        line["i8042"] = fresh("i8042")
        line["uart"] = fresh("uart")
        for key in ("latencies_us", "logger", "mmds"):
            line[key] = fresh(key)
        for n in self.nets:
            line[f"net_{n.iface_id}"] = fresh("net")
        line["net"] = fresh("net")
        for key in ("patch_api_requests", "put_api_requests", "seccomp", "vcpu", "vmm", "signals"):
            line[key] = fresh(key)
        line["vsock"] = fresh("vsock")
        line["entropy"] = fresh("entropy")
        line["pmem"] = fresh("pmem")
        line["interrupts"] = fresh("interrupts")
        line["memory_hotplug"] = fresh("memory_hotplug")
        return line

    def put_serial(self, body: bytes) -> Response:
        cfg = _serde(body, SERIAL)
        self._preboot()
        if cfg.get("serial_out_path") is not None:
            try:
                fd = os.open(
                    cfg["serial_out_path"],
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                    0o644,
                )
            except OSError as exc:
                raise ApiError(
                    f"Internal VMM error: Error opening serial output: {io_error(exc)}"
                ) from None
            _close(self.serial_fd)
            self.serial_fd = fd
        self.serial_config = cfg
        return self._ok()

    def put_entropy(self, body: bytes) -> Response:
        cfg = _serde(body, ENTROPY)
        self._preboot()
        self.entropy = cfg
        return self._ok()

    def put_balloon(self, body: bytes) -> Response:
        cfg = _serde(body, BALLOON)
        self._preboot()
        self.balloon = {
            "amount_mib": cfg["amount_mib"],
            "deflate_on_oom": cfg["deflate_on_oom"],
            "stats_polling_interval_s": cfg.get("stats_polling_interval_s") or 0,
            "free_page_hinting": bool(cfg.get("free_page_hinting") or False),
            "free_page_reporting": bool(cfg.get("free_page_reporting") or False),
        }
        return self._ok()

    def patch_balloon(self, body: bytes | None, sub: str | None) -> Response:
        if body is None and sub is None:
            raise ApiError("Empty PATCH request.")
        self._postboot()
        if self.balloon is None:
            raise ApiError("Balloon update error: No balloon device found.")
        if body is not None and sub is None:
            cfg = _serde(body, sd.struct("BalloonUpdateConfig", [("amount_mib", sd.U32)]))
            self.balloon["amount_mib"] = cfg["amount_mib"]
        return self._ok()

    def patch_balloon_hinting(self, body: bytes | None, what: str | None) -> Response:
        """``PATCH /balloon/hinting/start|stop`` (fc ``request/balloon.rs`` @ v1.16.1)."""
        if what not in ("start", "stop"):
            raise ApiError(f"Unrecognized PATCH request path `/hinting/{what or ''}`.")
        if what == "start" and body is not None and body.strip():
            _serde(body, HINTING_START)
        self._postboot()
        self._hinting(what, body)
        return self._ok()

    def put_cpu_config(self, body: bytes) -> Response:
        try:
            value = sd.from_slice(body, sd.ANY)
        except sd.SerdeError as exc:
            raise ApiError(
                f"An error occurred when deserializing the json body of a request: {exc}."
            ) from None
        self._preboot()
        self.cpu_config = value
        return self._ok()

    def put_mmds(self, body: bytes, sub: str | None) -> Response:
        if sub == "config":
            cfg = _serde(body, MMDS_CONFIG)
            self._preboot()
            known = {n.iface_id for n in self.nets}
            for iface in cfg["network_interfaces"]:
                if iface not in known:
                    raise ApiError(
                        "MMMDS config error: The list of network interface IDs provided contains "
                        "at least one ID that does not correspond to any existing network "
                        "interface."
                    )
            self.mmds_config = {
                "version": cfg.get("version") or "V1",
                "network_interfaces": cfg["network_interfaces"],
                "ipv4_address": cfg.get("ipv4_address") or "169.254.169.254",
                "imds_compat": bool(cfg.get("imds_compat") or False),
            }
            return self._ok()
        if sub is not None:
            raise ApiError(f"Invalid request method and/or path: PUT mmds/{sub}.")
        try:
            value = sd.from_slice(body, sd.ANY)
        except sd.SerdeError as exc:
            raise ApiError(
                f"An error occurred when deserializing the json body of a request: {exc}."
            ) from None
        self.mmds_put(value)
        return self._ok()

    def _mmds_fits(self, value: Any) -> None:
        """fc ``src/vmm/src/mmds/data_store.rs`` @ v1.16.1: the serialized store
        may not exceed the limit (413, ``MmdsLimitExceeded``)."""
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.opts.mmds_size_limit:
            raise ApiError(MMDS_LIMIT_EXCEEDED, status=413)

    def mmds_put(self, value: Any) -> None:
        """Replace the MMDS data store (``PUT /mmds``, ``--metadata``)."""
        self._mmds_fits(value)
        self.mmds = value

    def patch_mmds(self, body: bytes) -> Response:
        try:
            patch = sd.from_slice(body, sd.ANY)
        except sd.SerdeError as exc:
            raise ApiError(
                f"An error occurred when deserializing the json body of a request: {exc}."
            ) from None

        def merge(target: Any, p: Any) -> Any:
            if not isinstance(p, dict):
                return p
            base = dict(target) if isinstance(target, dict) else {}
            for k, v in p.items():
                if v is None:
                    base.pop(k, None)
                else:
                    base[k] = merge(base.get(k), v)
            return base

        if self.mmds is None:
            raise ApiError("MMDS error: The MMDS data store is not initialized.")
        merged = merge(self.mmds, patch)
        self._mmds_fits(merged)
        self.mmds = merged
        return self._ok()

    def patch_pmem(self, body: bytes, sub: str | None) -> Response:
        """``PATCH /pmem/{id}`` (fc ``request/pmem.rs``, ``rpc_interface.rs`` @ v1.16.1)."""
        pmem_id = checked_id(sub)
        cfg = _serde(body, PMEM_UPDATE)
        if cfg["id"] != pmem_id:
            raise ApiError("The id from the path does not match the id from the body!")
        if not self.booted:
            raise ApiError(NOT_BEFORE)
        if cfg.get("rate_limiter") is not None:  # no pmem device exists in a stand-in
            raise ApiError(
                "Pmem config error: Unable to patch the pmem device: Failed perform action on "
                "device: Device not found Please verify the request arguments."
            )
        return self._ok()

    def delete_device(self, kind: str, sub: str | None) -> Response:
        """``DELETE /{drives,pmem,network-interfaces}/{id}``: hot-unplug (v1.16.1).

        fc ``rpc_interface.rs`` (``OperationNotSupportedPreBoot`` before boot),
        ``device_manager/mod.rs`` ``hot_unplug_device``: PCI only, the device must
        exist and not be the root device. The stand-ins do not hot-unplug.
        """
        dev_id = checked_id(sub)
        if not self.booted:
            raise ApiError(NOT_BEFORE)
        if not self.opts.enable_pci:
            raise ApiError("PCI is not enabled")
        found = False
        if kind == "drives":
            drive = next((d for d in self.drives if d.config["drive_id"] == dev_id), None)
            if drive is not None and drive.config.get("is_root_device"):
                raise ApiError("Cannot unplug root device")
            found = drive is not None
        elif kind == "network-interfaces":
            found = any(n.iface_id == dev_id for n in self.nets)
        if not found:
            raise ApiError("Device not found")
        raise ApiError("The requested operation is not supported: hot-unplug is not simulated")

    def put_snapshot(self, body: bytes, sub: str | None) -> Response:
        if sub == "create":
            self._postboot()
            raise ApiError("Create snapshot error: snapshots are not simulated by banger-fcsim")
        if sub == "load":
            self._preboot()
            raise ApiError("Load snapshot error: snapshots are not simulated by banger-fcsim")
        raise ApiError(f"Invalid request method and/or path: PUT snapshot/{sub or ''}.")

    # ------------------------------------------------------------------ post-boot

    def patch_drive(self, body: bytes, sub: str | None) -> Response:
        drive_id = checked_id(sub)
        cfg = _serde(body, DRIVE_UPDATE)
        if drive_id != cfg["drive_id"]:
            raise ApiError("The id from the path does not match the id from the body!")
        self._postboot()
        if not any(d.drive_id == drive_id for d in self.drives):
            raise ApiError(
                "Drive config error: Unable to patch the block device: "
                f"Device ID {drive_id} not found"
            )
        return self._ok()

    def patch_net(self, body: bytes, sub: str | None) -> Response:
        iface_id = checked_id(sub)
        cfg = _serde(body, NET_UPDATE)
        if iface_id != cfg["iface_id"]:
            raise ApiError(
                f"The id from the path [{iface_id}] does not match the id from the body "
                f"[{cfg['iface_id']}]!"
            )
        self._postboot()
        if not any(n.iface_id == iface_id for n in self.nets):
            raise ApiError("Network config error: Invalid interface ID - not found.")
        return self._ok()

    def patch_vm(self, body: bytes) -> Response:
        cfg = _serde(body, VM_STATE)
        self._postboot()
        if cfg["state"] == "Paused":
            if self.guest is not None:
                self.guest.pause()
            self.state = "Paused"
        else:
            if self.guest is not None:
                self.guest.resume()
            self.state = "Running"
        return self._ok()

    def put_actions(self, body: bytes) -> Response:
        cfg = _serde(body, ACTION)
        action = cfg["action_type"]
        if action == "InstanceStart":
            self._preboot()
            self.start()
            return self._ok()
        self._postboot()
        if action == "SendCtrlAltDel":
            if self.guest is not None:
                self.guest.ctrl_alt_del()
            return self._ok()
        self.write_metrics()
        return self._ok()

    def start(self) -> None:
        """InstanceStart: boot the guest or raise ``Start microvm error: ...``."""
        if self.boot_source is None:
            raise ApiError(
                "Start microvm error: Cannot start microvm without kernel configuration."
            )
        check_kernel_image(self)
        if self.guest_factory is not None:
            guest = self.guest_factory(self)
            try:
                guest.start()
            except ApiError:
                raise
            except Exception as exc:
                with contextlib.suppress(Exception):
                    guest.teardown()
                raise ApiError(f"Start microvm error: {exc}") from None
            self.guest = guest
        self.state = "Running"

    def kernel_cmdline(self) -> str:
        """The command line the guest sees (boot args + ``root=/dev/vda ro|rw``)."""
        assert self.boot_source is not None
        args = self.boot_source.get("boot_args")
        cmdline = DEFAULT_KERNEL_CMDLINE if args is None else args
        if self.drives and self.drives[0].is_root:
            root = self.drives[0]
            partuuid = root.config.get("partuuid")
            dev = f"root=PARTUUID={partuuid}" if partuuid else "root=/dev/vda"
            cmdline = f"{cmdline} {dev} {'ro' if root.read_only else 'rw'}"
        return cmdline.strip()

    def close(self) -> None:
        """Close every fd the VMM holds (the vsock socket file stays, as in Firecracker)."""
        _close(self.kernel_fd)
        _close(self.initrd_fd)
        for d in self.drives:
            _close(d.fd)
        for n in self.nets:
            _close(n.tap_fd)
        if self.vsock is not None and self.vsock.listener is not None:
            self.vsock.listener.close()
        _close(self.metrics_fd)
        _close(self.serial_fd)
