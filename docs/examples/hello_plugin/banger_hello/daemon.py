"""The daemon side of banger-hello (imported by bangerd only)."""

from __future__ import annotations

from typing import Any

from banger_core import ValidationError

_config: dict[str, Any] = {"greeting": "hello", "shout": False}


def configure(config: dict[str, Any]) -> None:
    """Remember the effective ``[plugins.hello]`` section."""
    _config.update(config)


def greet(params: dict[str, Any], call: Any) -> dict[str, str]:
    """``hello.greet``: ``{"who": "world"}`` -> ``{"message": "hello world"}``."""
    who = params.get("who", "world")
    if not isinstance(who, str) or not who:
        raise ValidationError("hello.greet: 'who' must be a non-empty string")
    message = f"{_config['greeting']} {who}"
    return {"message": message.upper() if _config["shout"] else message}
