"""The guest-facing side of MMDS: answer the guest's HTTP requests as Firecracker v1.16.1 does.

Ported from upstream ``src/vmm/src/mmds/mod.rs`` (``convert_to_response``,
``respond_to_get_request_v1/v2``, ``respond_to_put_request``),
``src/vmm/src/mmds/data_store.rs`` (``get_value``, ``format_imds``) and
``src/vmm/src/mmds/token.rs`` (``PATH_TO_TOKEN``, TTL bounds): V1 answers
GETs with or without a token, V2 wants a session token from
``PUT /latest/api/token`` (``X-metadata-token-ttl-seconds``, 1 to 21600) in
``X-metadata-token``. Tokens here are random strings with an expiry, not
Firecracker's encrypted ones (both are opaque to the guest).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

PATH_TO_TOKEN = "/latest/api/token"
MIN_TOKEN_TTL_SECONDS = 1
MAX_TOKEN_TTL_SECONDS = 21600
TOKEN_HEADERS = ("x-metadata-token", "x-aws-ec2-metadata-token")
TTL_HEADERS = ("x-metadata-token-ttl-seconds", "x-aws-ec2-metadata-token-ttl-seconds")

INVALID_URI = "Invalid URI."
METHOD_NOT_ALLOWED = "Not allowed HTTP method."
NO_TOKEN = (
    "No MMDS token provided. Use `X-metadata-token` or `X-aws-ec2-metadata-token` header "
    "to specify the session token."
)
INVALID_TOKEN = "MMDS token not valid."
NO_TTL = (
    "Token time to live value not found. Use `X-metadata-token-ttl-seconds` or "
    "`X-aws-ec2-metadata-token-ttl-seconds` header to specify the token's lifetime."
)
UNSUPPORTED_VALUE = "Cannot retrieve value. The value has an unsupported type."


@dataclass
class Reply:
    """One HTTP answer to the guest."""

    status: int
    body: str
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class TokenAuthority:
    """Session tokens and their expiry (monotonic seconds)."""

    tokens: dict[str, float] = field(default_factory=dict)

    def generate(self, ttl: int) -> str:
        """A new token valid ``ttl`` seconds."""
        now = time.monotonic()
        self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
        token = secrets.token_urlsafe(42)
        self.tokens[token] = now + ttl
        return token

    def is_valid(self, token: str) -> bool:
        """Known and not expired."""
        expiry = self.tokens.get(token)
        return expiry is not None and expiry > time.monotonic()


def _sanitize(uri: str) -> str:
    while "//" in uri:
        uri = uri.replace("//", "/")
    return uri


def _pointer(data: Any, path: str) -> tuple[bool, Any]:
    """RFC 6901 JSON pointer lookup (serde_json ``Value::pointer``)."""
    if path == "":
        return True, data
    if not path.startswith("/"):
        return False, None
    cur = data
    for raw in path[1:].split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and key.isdigit() and int(key) < len(cur):
            cur = cur[int(key)]
        else:
            return False, None
    return True, cur


def _format_imds(value: Any) -> str | None:
    if isinstance(value, dict):
        return "\n".join(k + ("/" if isinstance(v, dict) else "") for k, v in value.items())
    if isinstance(value, str):
        return value
    return None


def _header(headers: dict[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        if name in headers:
            return name, headers[name]
    return None


def respond(
    method: str,
    uri: str,
    headers: dict[str, str],
    *,
    data: Any,
    version: str,
    imds_compat: bool,
    tokens: TokenAuthority,
) -> Reply:
    """The answer to one guest request (``headers`` keys in lower case)."""
    path = uri.split("?", 1)[0]
    if not path:
        return Reply(400, INVALID_URI)
    if method == "PUT":
        return _put(path, headers, tokens)
    if method != "GET":
        return Reply(405, METHOD_NOT_ALLOWED, headers={"Allow": "GET, PUT"})
    token = _header(headers, TOKEN_HEADERS)
    if version == "V2":
        if token is None:
            return Reply(401, NO_TOKEN)
        if not tokens.is_valid(token[1]):
            return Reply(401, INVALID_TOKEN)
    json_path = _sanitize(path)
    found, value = _pointer(data, json_path[:-1] if json_path.endswith("/") else json_path)
    if not found:
        return Reply(404, f"Resource not found: {path}.")
    as_json = "application/json" in headers.get("accept", "") and not imds_compat
    if as_json:
        return Reply(200, json.dumps(value, separators=(",", ":")), "application/json")
    text = _format_imds(value)
    if text is None:
        return Reply(501, UNSUPPORTED_VALUE)
    return Reply(200, text)


def _put(path: str, headers: dict[str, str], tokens: TokenAuthority) -> Reply:
    if "x-forwarded-for" in headers:
        return Reply(400, "Invalid header. Reason: Unsupported header name. Key: X-Forwarded-For")
    if _sanitize(path) != PATH_TO_TOKEN:
        return Reply(404, f"Resource not found: {path}.")
    ttl_header = _header(headers, TTL_HEADERS)
    if ttl_header is None:
        return Reply(400, NO_TTL)
    name, raw = ttl_header
    try:
        ttl = int(raw)
        if ttl < 0 or ttl > 0xFFFF_FFFF:
            raise ValueError
    except ValueError:
        return Reply(400, f"Invalid value. Key:{name}; Value:{raw}")
    if not MIN_TOKEN_TTL_SECONDS <= ttl <= MAX_TOKEN_TTL_SECONDS:
        return Reply(
            400,
            f"Invalid time to live value provided for token: {ttl}. "
            f"Please provide a value between {MIN_TOKEN_TTL_SECONDS} and "
            f"{MAX_TOKEN_TTL_SECONDS}.",
        )
    canonical = (
        "X-metadata-token-ttl-seconds"
        if name == TTL_HEADERS[0]
        else ("X-aws-ec2-metadata-token-ttl-seconds")
    )
    return Reply(200, tokens.generate(ttl), headers={canonical: str(ttl)})


def render(reply: Reply) -> bytes:
    """The HTTP/1.1 bytes of ``reply``."""
    reasons = {
        200: "OK",
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Payload Too Large",
        501: "Not Implemented",
    }
    body = reply.body.encode()
    lines = [
        f"HTTP/1.1 {reply.status} {reasons.get(reply.status, '')}",
        "Server: Firecracker API",
        "Connection: keep-alive",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in reply.headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
