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


@dataclass
class PassFd:
    """A handler's result that comes with a file descriptor (sent with ``SCM_RIGHTS``).

    The server sends ``result`` as the reply line with ``fd`` attached, then
    closes its copy of ``fd``.
    """

    result: Any
    fd: int


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


MAX_DEPTH = 64
"""How deeply a request may nest JSON arrays and objects."""


def decode_request(line: bytes) -> dict[str, Any]:
    """Parse one request line; any malformed input is a one-line ``invalid`` error."""
    from banger_core.errors import ValidationError

    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"request is not UTF-8 text (bad byte at offset {exc.start})")
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise ValidationError(f"request nests deeper than {MAX_DEPTH} levels")
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"request is not valid JSON: {str(exc)[:120]}")
    if not isinstance(msg, dict):
        raise ValidationError("request must be a JSON object")
    if not isinstance(msg.get("method"), str) or not msg["method"]:
        raise ValidationError("request has no method (a string like 'vm.list')")
    return msg


def _depth(text: str) -> int:
    """Maximum bracket nesting outside strings (a cheap guard before parsing)."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
