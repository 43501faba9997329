"""A small Firecracker API client: HTTP/1.1 over the VMM's Unix socket.

Standard library only. One keep-alive connection is kept per client and
re-opened once when the server closed it. Bodies are sent with an explicit
``Content-Length`` (Firecracker does not accept chunked bodies). Any non-2xx
answer raises :class:`FirecrackerAPIError` carrying Firecracker's
``fault_message``.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

from banger_core.errors import BangerError
from banger_core.firecracker.models import (
    BootSource,
    Drive,
    InstanceInfo,
    Logger,
    MachineConfig,
    Metrics,
    NetworkInterface,
    Serial,
    Vsock,
)

__all__ = ["FirecrackerAPIError", "FirecrackerClient", "FirecrackerConnectionError"]


class FirecrackerAPIError(BangerError):
    """Firecracker answered with an error status; the message is its ``fault_message``."""

    code = "firecracker"

    def __init__(
        self, status: int, fault_message: str, *, method: str = "", path: str = ""
    ) -> None:
        super().__init__(fault_message)
        self.status = status
        self.fault_message = fault_message
        self.method = method
        self.path = path


class FirecrackerConnectionError(BangerError):
    """The API socket could not be reached or the connection broke mid-request."""

    code = "firecracker"


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class FirecrackerClient:
    """Talks to one Firecracker (or ``banger-fcsim``) process over its API socket."""

    def __init__(self, api_sock: Path | str, timeout: float = 5.0) -> None:
        self.api_sock = Path(api_sock)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ transport

    def close(self) -> None:
        """Close the keep-alive connection (a later call reconnects)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buf = b""

    def __enter__(self) -> FirecrackerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.api_sock))
        except OSError as exc:
            sock.close()
            raise FirecrackerConnectionError(
                f"cannot connect to Firecracker API socket {self.api_sock}: {exc.strerror or exc}"
            ) from None
        return sock

    def _read_response(self, sock: socket.socket) -> _Response:
        while b"\r\n\r\n" not in self._buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("connection closed by the VMM")
            self._buf += chunk
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise FirecrackerConnectionError(f"bad status line from {self.api_sock}: {lines[0]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("connection closed by the VMM")
            rest += chunk
        self._buf = rest[length:]
        return _Response(status, headers, rest[:length])

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return ``(status, parsed JSON or None)``.

        Raises :class:`FirecrackerAPIError` for error statuses and
        :class:`FirecrackerConnectionError` when the socket is unreachable.
        """
        timeout = self.timeout if timeout is None else timeout
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        data = head.encode() + b"\r\n" + payload
        with self._lock:
            resp = self._exchange(data, timeout)
        parsed: Any = None
        if resp.body:
            try:
                parsed = json.loads(resp.body)
            except ValueError:
                parsed = resp.body.decode(errors="replace")
        if resp.status >= 300:
            if isinstance(parsed, dict):
                message = parsed.get("fault_message") or parsed.get("error") or str(parsed)
            else:
                message = str(parsed or f"HTTP {resp.status}")
            raise FirecrackerAPIError(resp.status, str(message), method=method, path=path)
        return resp.status, parsed

    def _exchange(self, data: bytes, timeout: float) -> _Response:
        for attempt in (0, 1):
            fresh = self._sock is None
            if self._sock is None:
                self._sock = self._connect(timeout)
                self._buf = b""
            sock = self._sock
            sock.settimeout(timeout)
            try:
                sock.sendall(data)
                return self._read_response(sock)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
                self.close()
                if fresh or attempt == 1:
                    raise FirecrackerConnectionError(
                        f"Firecracker API socket {self.api_sock} closed the connection: {exc}"
                    ) from None
            except TimeoutError:
                self.close()
                raise FirecrackerConnectionError(
                    f"Firecracker API on {self.api_sock} did not answer within {timeout:g}s"
                ) from None
            except OSError as exc:
                self.close()
                raise FirecrackerConnectionError(
                    f"Firecracker API socket {self.api_sock}: {exc.strerror or exc}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ typed API

    def get_instance_info(self) -> InstanceInfo:
        """``GET /``: id, state (``Not started``/``Running``/``Paused``) and version."""
        return InstanceInfo.from_json(self.request("GET", "/")[1])

    def get_version(self) -> str:
        """``GET /version``: the VMM version, e.g. ``1.16.1``."""
        return str(self.request("GET", "/version")[1]["firecracker_version"])

    def get_machine_config(self) -> dict[str, Any]:
        """``GET /machine-config``."""
        return dict(self.request("GET", "/machine-config")[1])

    def get_vm_config(self) -> dict[str, Any]:
        """``GET /vm/config``: the full configuration."""
        return dict(self.request("GET", "/vm/config")[1])

    def put_machine_config(
        self,
        vcpu_count: int,
        mem_size_mib: int,
        smt: bool = False,
        track_dirty_pages: bool | None = None,
        huge_pages: str | None = None,
    ) -> None:
        """``PUT /machine-config``."""
        cfg = MachineConfig(vcpu_count, mem_size_mib, smt, track_dirty_pages, huge_pages)
        self.request("PUT", "/machine-config", cfg.to_json())

    def patch_machine_config(self, **changes: Any) -> None:
        """``PATCH /machine-config`` with a subset of fields."""
        self.request("PATCH", "/machine-config", changes)

    def put_boot_source(
        self,
        kernel_image_path: str | Path,
        boot_args: str | None = None,
        initrd_path: str | Path | None = None,
    ) -> None:
        """``PUT /boot-source`` (the VMM opens the kernel and initrd right away)."""
        src = BootSource(
            str(kernel_image_path), boot_args, None if initrd_path is None else str(initrd_path)
        )
        self.request("PUT", "/boot-source", src.to_json())

    def put_drive(
        self,
        drive_id: str,
        path_on_host: str | Path,
        is_root_device: bool,
        is_read_only: bool,
        **extra: Any,
    ) -> None:
        """``PUT /drives/{drive_id}`` (the VMM opens the file right away)."""
        drive = Drive(drive_id, str(path_on_host), is_root_device, is_read_only)
        body = {**drive.to_json(), **extra}
        # Drives get half the request timeout in the Go SDK; keep the full one here.
        self.request("PUT", f"/drives/{drive_id}", body)

    def put_network_interface(
        self,
        iface_id: str,
        host_dev_name: str,
        guest_mac: str | None = None,
        mtu: int | None = None,
    ) -> None:
        """``PUT /network-interfaces/{iface_id}`` (the VMM opens the TAP right away)."""
        nic = NetworkInterface(iface_id, host_dev_name, guest_mac, mtu)
        self.request("PUT", f"/network-interfaces/{iface_id}", nic.to_json())

    def put_vsock(self, guest_cid: int, uds_path: str | Path) -> None:
        """``PUT /vsock`` (the VMM binds ``uds_path`` right away; it must not exist)."""
        self.request("PUT", "/vsock", Vsock(guest_cid, str(uds_path)).to_json())

    def put_logger(
        self,
        log_path: str | Path | None = None,
        level: str | None = "Info",
        show_level: bool | None = True,
        show_log_origin: bool | None = False,
    ) -> None:
        """``PUT /logger`` (a missing log file is created)."""
        cfg = Logger(
            None if log_path is None else str(log_path), level, show_level, show_log_origin
        )
        self.request("PUT", "/logger", cfg.to_json())

    def put_metrics(self, metrics_path: str | Path) -> None:
        """``PUT /metrics`` (succeeds once per process)."""
        self.request("PUT", "/metrics", Metrics(str(metrics_path)).to_json())

    def put_serial(self, serial_out_path: str | Path) -> None:
        """``PUT /serial``: write the guest console to a file instead of stdout."""
        self.request("PUT", "/serial", Serial(str(serial_out_path)).to_json())

    def action(self, action_type: str) -> None:
        """``PUT /actions`` with ``action_type``."""
        self.request("PUT", "/actions", {"action_type": action_type})

    def instance_start(self) -> None:
        """``InstanceStart``: returns once the vCPUs (the simulated guest) run."""
        self.action("InstanceStart")

    def send_ctrl_alt_del(self) -> None:
        """``SendCtrlAltDel``: queue the keys; the guest then reboots and the VMM exits 0."""
        self.action("SendCtrlAltDel")

    def flush_metrics(self) -> None:
        """``FlushMetrics``."""
        self.action("FlushMetrics")

    def pause(self) -> None:
        """``PATCH /vm {"state": "Paused"}``."""
        self.request("PATCH", "/vm", {"state": "Paused"})

    def resume(self) -> None:
        """``PATCH /vm {"state": "Resumed"}``."""
        self.request("PATCH", "/vm", {"state": "Resumed"})

    def ping(self, timeout: float | None = None) -> bool:
        """Return True when ``GET /machine-config`` answers (how the Go SDK waits)."""
        try:
            self.request("GET", "/machine-config", timeout=timeout)
        except BangerError:
            self.close()
            return False
        return True
