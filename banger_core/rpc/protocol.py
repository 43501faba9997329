"""Wire format: one JSON object per line over the daemon's Unix socket.

Request: ``{"id": 1, "method": "vm.list", "params": {...}}``.
Response: ``{"id": 1, "result": ...}`` or
``{"id": 1, "error": {"code": "not_found", "message": "..."}}``.

A client that closes its connection cancels the requests it had in flight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_LINE = 4 * 1024 * 1024


def encode(obj: dict[str, Any]) -> bytes:
    """Serialise one message as a JSON line."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def request(req_id: int, method: str, params: dict[str, Any] | None) -> bytes:
    """Encode a request."""
    return encode({"id": req_id, "method": method, "params": params or {}})


def ok(req_id: Any, result: Any) -> bytes:
    """Encode a successful response."""
    return encode({"id": req_id, "result": result})


def error(req_id: Any, code: str, message: str) -> bytes:
    """Encode an error response."""
    return encode({"id": req_id, "error": {"code": code, "message": message}})


@dataclass
class FDResult:
    """A handler's result that also hands the caller an open file descriptor.

    The daemon sends the reply line with ``fd`` attached (``SCM_RIGHTS``)
    and closes its own copy; the client receives it with
    :meth:`banger_core.rpc.client.RPCClient.call_with_fd`. Used to give the
    CLI a connection the daemon opened (a VM's guest agent), so the data
    never flows through the daemon.
    """

    result: Any
    fd: int
