"""The guest-config drive format, for the host side that builds the drive.

A guest-config drive is a raw block device (a file attached as a read-only
drive) whose content is the line ``BANGER-GUEST-CONFIG 1\\n``, then one UTF-8
JSON document, then NUL padding up to a multiple of 4096 bytes. The guest's
``banger-boot`` reads it (the decoder lives there so that file stays
standalone; it is re-exported here).
"""

from __future__ import annotations

import json
from typing import Any

from banger_guest.boot import (
    MAGIC,
    SUPPORTED_MAJOR,
    ConfigFormatError,
    decode_config,
    read_config_device,
    validate_config,
)

BLOCK = 4096

__all__ = [
    "MAGIC",
    "SUPPORTED_MAJOR",
    "ConfigFormatError",
    "decode_config",
    "encode_config",
    "read_config_device",
    "validate_config",
    "write_config_drive",
]


def encode_config(doc: dict[str, Any]) -> bytes:
    """Encode a guest-config document into drive content (validated, NUL-padded)."""
    validate_config(doc, source="guest config")
    body = MAGIC + json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
    size = max(BLOCK, -(-len(body) // BLOCK) * BLOCK)
    return body + b"\0" * (size - len(body))


def write_config_drive(path: str, doc: dict[str, Any]) -> None:
    """Write ``doc`` as a guest-config drive image at ``path``."""
    with open(path, "wb") as f:
        f.write(encode_config(doc))
