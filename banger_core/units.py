"""Parsing and checking sizes and names given by users (standard library only)."""

from __future__ import annotations

import re

from banger_core.errors import ValidationError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def parse_size(value: str | int, what: str = "size", default_unit: str = "") -> int:
    """``"8G"`` -> bytes. A bare number is in ``default_unit`` (bytes if empty)."""
    if isinstance(value, bool):
        raise ValidationError(f"{what} {value!r} is not a size")
    if isinstance(value, int):
        return _bounded(value * _FACTORS[default_unit.upper()], what, value)
    match = _SIZE.match(str(value)) if len(str(value)) <= 64 or str(value)[:1].isdigit() else None
    if not match:
        raise ValidationError(
            f"{what} {_short(value)} is not a size; use a number with an optional K, M, G or T "
            "suffix (e.g. 8G)"
        )
    number, unit = match.groups()
    unit = unit.upper() or default_unit.upper()
    # Exact arithmetic: float() turns a 400-digit number into inf (OverflowError).
    whole, _, frac = number.partition(".")
    if len(whole) > 30:
        raise ValidationError(
            f"{what} {_short(value)} is too big (at most {format_size(MAX_SIZE)})"
        )
    frac = frac[:30]
    scaled = int(whole) * _FACTORS[unit] + (
        int(frac) * _FACTORS[unit] // 10 ** len(frac) if frac else 0
    )
    return _bounded(scaled, what, value)


MAX_SIZE = 1 << 60
"""The largest size banger accepts (1 EiB): anything bigger is refused as too big."""


def _short(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _bounded(size: int, what: str, value: object) -> int:
    if size > MAX_SIZE:
        raise ValidationError(
            f"{what} {_short(value)} is too big (at most {format_size(MAX_SIZE)})"
        )
    if size < 0:
        raise ValidationError(f"{what} {_short(value)} is negative; sizes are positive")
    return size


def format_size(n: int, *, limit: bool = False) -> str:
    """Bytes -> the shortest exact ``8G`` / ``1536M`` form.

    With ``limit`` (an upper bound shown to a user), a size whose exact form
    is long is rounded down to one a person reads at a glance: a whole
    number, at least 10, of the largest unit that gives one
    (264212084K -> ``251G``); every size up to the result is allowed.
    """
    exact = str(n)
    for unit in ("T", "G", "M", "K"):
        if n and n % _FACTORS[unit] == 0:
            exact = f"{n // _FACTORS[unit]}{unit}"
            break
    if not limit or len(exact) <= 5:
        return exact
    for unit in ("T", "G", "M", "K"):
        if n >= 10 * _FACTORS[unit]:
            return f"{n // _FACTORS[unit]}{unit}"
    return exact


def check_vm_name(name: object) -> str:
    """A VM name must be a DNS label (it becomes ``<name>.vm``)."""
    if not isinstance(name, str) or not _DNS_LABEL.match(name):
        raise ValidationError(
            f"VM name {name!r} is not valid: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def did_you_mean(wrong: str, known: list[str], what: str = "VMs") -> str:
    """`` (did you mean 'web'? VMs: db, web)`` for a mistyped name; ``""`` when nothing exists.

    Lists at most 10 names; suggests the closest ones (``difflib``) when any
    is close enough.
    """
    import difflib

    names = sorted(set(known))
    if not names:
        return ""
    close = difflib.get_close_matches(wrong, names, n=2, cutoff=0.6)
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    guess = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f" ({guess}{what}: {shown})"
