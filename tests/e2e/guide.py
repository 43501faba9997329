"""Executable examples of docs/user-guide.md: parse its ``console`` blocks, compare output.

A fenced block whose info string is ``console`` is an executed example:
each ``$ COMMAND`` line runs (``sh -c``, stdout and stderr together, in
order) and the lines up to the next ``$`` line are what it must print.
Before comparing, both sides are normalised (:func:`normalise`): VM and
image ids become ``<id>``, durations ``<t>``, IPv4 addresses ``<ip>``, PIDs
``<pid>``, decimal sizes ``<size>``, the host's state and runtime
directories ``/var/lib/banger`` and ``/run/banger``, runs of spaces one
space. An expected line ``...`` stands for any number of lines. Plain
fenced blocks (no info string) are illustrations and are not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ELLIPSIS = "..."

_TOKENS = [
    (re.compile(r"\b[0-9a-f]{12}\b"), "<id>"),
    (re.compile(r"\b\d+\.\d+s\b"), "<t>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "<ip>"),
    (re.compile(r"\b(pid:?\s+)\d+"), r"\1<pid>"),
    (re.compile(r"\b\d+\.\d+[KMGT]\b"), "<size>"),
]


@dataclass
class Command:
    """One ``$`` line of a console block and the output the guide shows for it."""

    line: int
    command: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    """A ``console`` block: where it starts in the guide, and its commands."""

    line: int
    commands: list[Command]


def console_blocks(text: str) -> list[Block]:
    """Every ````` ```console ````` block of ``text``, in order."""
    blocks: list[Block] = []
    current: Block | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if current is None:
            if raw.strip() == "```console":
                current = Block(number, [])
            continue
        if raw.strip() == "```":
            blocks.append(current)
            current = None
        elif raw.startswith("$ "):
            current.commands.append(Command(number, raw[2:]))
        elif current.commands:
            current.commands[-1].expected.append(raw)
        else:
            raise ValueError(f"line {number}: output before the first `$` line of the block")
    if current is not None:
        raise ValueError(f"line {current.line}: console block never closed")
    return blocks


def normalise(line: str, replacements: list[tuple[str, str]] = ()) -> str:  # type: ignore[assignment]
    """One output line with everything that varies between runs replaced."""
    for old, new in replacements:
        line = line.replace(old, new)
    for pattern, token in _TOKENS:
        line = pattern.sub(token, line)
    return " ".join(line.split())


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether normalised ``actual`` lines fit ``expected`` (``...`` = any lines)."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == ELLIPSIS:
        return any(matches(rest, actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and actual[0] == head and matches(rest, actual[1:])


def guide_path() -> Path:
    """docs/user-guide.md of this checkout."""
    return Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
