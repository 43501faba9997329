"""A tiny schema-driven JSON reader that fails the way ``serde_json`` does.

Firecracker parses request bodies with serde (``deny_unknown_fields`` on most
structs) and returns the serde error text inside its fault message, e.g.
``missing field `kernel_image_path` at line 1 column 2``. This module reads
JSON sequentially against a schema and raises :class:`SerdeError` with the
same wording and the same line/column convention (columns count bytes read so
far on the current line; "peek" errors point at the offending byte).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class SerdeError(Exception):
    """A serde-style error; ``str()`` gives ``<message> at line L column C``."""


@dataclass(frozen=True)
class T:
    """A type in a schema."""

    kind: str  # bool, str, uint, struct, enum, option, map, any, seq
    name: str = ""  # u8/u32/... or struct name
    bits: int = 64
    fields: tuple[tuple[str, T], ...] = ()
    required: frozenset[str] = frozenset()
    deny_unknown: bool = True
    variants: tuple[str, ...] = ()
    inner: T | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    def expecting(self) -> str:
        """serde's ``expecting`` text for this type."""
        if self.kind == "bool":
            return "a boolean"
        if self.kind == "str":
            return "a string"
        if self.kind == "uint":
            return self.name
        if self.kind == "struct":
            return f"struct {self.name}"
        if self.kind == "enum":
            return f"enum {self.name}"
        if self.kind == "option":
            return "option"
        if self.kind == "map":
            return "a map"
        if self.kind == "seq":
            return "a sequence"
        return "any valid JSON value"


BOOL = T("bool")
STR = T("str")
U8 = T("uint", "u8", 8)
U16 = T("uint", "u16", 16)
U32 = T("uint", "u32", 32)
U64 = T("uint", "u64", 64)
USIZE = T("uint", "usize", 64)
ANY = T("any")


def opt(inner: T) -> T:
    """``Option<inner>``."""
    return T("option", inner=inner)


def seq(inner: T) -> T:
    """``Vec<inner>``."""
    return T("seq", inner=inner)


def enum(name: str, *variants: str) -> T:
    """A unit-variant enum deserialized from a string."""
    return T("enum", name, variants=variants)


def struct(
    name: str,
    fields: list[tuple[str, T]],
    required: list[str] | None = None,
    deny_unknown: bool = True,
) -> T:
    """A struct; ``required`` defaults to every non-``Option`` field."""
    if required is None:
        required = [n for n, t in fields if t.kind != "option"]
    return T(
        "struct",
        name,
        fields=tuple(fields),
        required=frozenset(required),
        deny_unknown=deny_unknown,
    )


STR_MAP = T("map", inner=STR)


def one_of(names: list[str] | tuple[str, ...], what: str) -> str:
    """serde's ``OneOf`` formatting."""
    if not names:
        return f"there are no {what}"
    if len(names) == 1:
        return f"expected `{names[0]}`"
    if len(names) == 2:
        return f"expected `{names[0]}` or `{names[1]}`"
    return "expected one of " + ", ".join(f"`{n}`" for n in names)


def _unexpected(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{_fmt_float(value)}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _fmt_float(value: float) -> str:
    text = repr(value)
    if text.endswith(".0"):
        return text
    return text


class Reader:
    """Sequential JSON reader over bytes with serde_json's error conventions."""

    def __init__(self, data: bytes) -> None:
        self.s = data
        self.i = 0

    # ---------------------------------------------------------------- positions
    def _pos(self, index: int) -> tuple[int, int]:
        index = min(index, len(self.s))
        line = self.s.count(b"\n", 0, index) + 1
        col = index - (self.s.rfind(b"\n", 0, index) + 1)
        return line, col

    def error(self, msg: str) -> SerdeError:
        """Error at the current (consumed) position."""
        line, col = self._pos(self.i)
        return SerdeError(f"{msg} at line {line} column {col}")

    def peek_error(self, msg: str) -> SerdeError:
        """Error pointing at the next byte."""
        line, col = self._pos(self.i + 1)
        return SerdeError(f"{msg} at line {line} column {col}")

    # ---------------------------------------------------------------- lexing
    def ws(self) -> int | None:
        s = self.s
        while self.i < len(s) and s[self.i] in b" \t\r\n":
            self.i += 1
        return s[self.i] if self.i < len(s) else None

    def parse_str(self) -> str:
        """Parse a string; the opening quote is at ``self.i``."""
        self.i += 1
        out = bytearray()
        s = self.s
        while True:
            if self.i >= len(s):
                raise self.error("EOF while parsing a string")
            c = s[self.i]
            self.i += 1
            if c == 0x22:
                break
            if c == 0x5C:
                if self.i >= len(s):
                    raise self.error("EOF while parsing a string")
                e = s[self.i]
                self.i += 1
                simple = {
                    0x22: b'"',
                    0x5C: b"\\",
                    0x2F: b"/",
                    0x62: b"\b",
                    0x66: b"\f",
                    0x6E: b"\n",
                    0x72: b"\r",
                    0x74: b"\t",
                }
                if e in simple:
                    out += simple[e]
                elif e == 0x75:
                    hexs = s[self.i : self.i + 4]
                    try:
                        code = int(hexs, 16)
                    except ValueError:
                        raise self.error("invalid escape") from None
                    self.i += 4
                    if 0xD800 <= code < 0xDC00 and s[self.i : self.i + 2] == b"\\u":
                        try:
                            low = int(s[self.i + 2 : self.i + 6], 16)
                        except ValueError:
                            raise self.error("invalid escape") from None
                        self.i += 6
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    out += chr(code).encode("utf-8", "surrogatepass")
                else:
                    raise self.error("invalid escape")
            elif c < 0x20:
                raise self.error("control character (\\u0000-\\u001F) found while parsing a string")
            else:
                out.append(c)
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("invalid unicode code point") from None

    def parse_number(self) -> int | float:
        s = self.s
        start = self.i
        if s[self.i] == 0x2D:
            self.i += 1
        if self.i >= len(s) or not (0x30 <= s[self.i] <= 0x39):
            raise self.error("invalid number")
        while self.i < len(s) and 0x30 <= s[self.i] <= 0x39:
            self.i += 1
        is_float = False
        if self.i < len(s) and s[self.i] == 0x2E:
            is_float = True
            self.i += 1
            if self.i >= len(s) or not (0x30 <= s[self.i] <= 0x39):
                raise self.error("invalid number")
            while self.i < len(s) and 0x30 <= s[self.i] <= 0x39:
                self.i += 1
        if self.i < len(s) and s[self.i] in b"eE":
            is_float = True
            self.i += 1
            if self.i < len(s) and s[self.i] in b"+-":
                self.i += 1
            if self.i >= len(s) or not (0x30 <= s[self.i] <= 0x39):
                raise self.error("invalid number")
            while self.i < len(s) and 0x30 <= s[self.i] <= 0x39:
                self.i += 1
        text = s[start : self.i].decode()
        return float(text) if is_float else int(text)

    def parse_ident(self, word: bytes) -> None:
        for expected in word:
            if self.i >= len(self.s):
                raise self.error("EOF while parsing a value")
            if self.s[self.i] != expected:
                self.i += 1
                raise self.error("expected ident")
            self.i += 1

    def parse_any(self) -> Any:
        """Parse any JSON value (used for skipped fields and free-form bodies)."""
        c = self.ws()
        if c is None:
            raise self.peek_error("EOF while parsing a value")
        if c == 0x22:
            return self.parse_str()
        if c == 0x7B:
            self.i += 1
            obj: dict[str, Any] = {}
            c = self.ws()
            if c == 0x7D:
                self.i += 1
                return obj
            while True:
                c = self.ws()
                if c is None:
                    raise self.peek_error("EOF while parsing an object")
                if c != 0x22:
                    raise self.peek_error("key must be a string")
                key = self.parse_str()
                self.colon()
                obj[key] = self.parse_any()
                if self.end_or_comma(0x7D, "an object", "expected `,` or `}`"):
                    return obj
        if c == 0x5B:
            self.i += 1
            arr: list[Any] = []
            c = self.ws()
            if c == 0x5D:
                self.i += 1
                return arr
            while True:
                arr.append(self.parse_any())
                if self.end_or_comma(0x5D, "a list", "expected `,` or `]`"):
                    return arr
        if c == 0x74:
            self.i += 1
            self.parse_ident(b"rue")
            return True
        if c == 0x66:
            self.i += 1
            self.parse_ident(b"alse")
            return False
        if c == 0x6E:
            self.i += 1
            self.parse_ident(b"ull")
            return None
        if c == 0x2D or 0x30 <= c <= 0x39:
            return self.parse_number()
        raise self.peek_error("expected value")

    def colon(self) -> None:
        c = self.ws()
        if c is None:
            raise self.peek_error("EOF while parsing an object")
        if c != 0x3A:
            raise self.peek_error("expected `:`")
        self.i += 1

    def end_or_comma(self, close: int, what: str, expect_msg: str) -> bool:
        """After a member: consume ``,`` (False) or the closing bracket (True)."""
        c = self.ws()
        if c is None:
            raise self.peek_error(f"EOF while parsing {what}")
        if c == close:
            self.i += 1
            return True
        if c == 0x2C:
            self.i += 1
            nxt = self.ws()
            if nxt == close:
                raise self.peek_error("trailing comma")
            return False
        raise self.peek_error(expect_msg)

    # ---------------------------------------------------------------- typed
    def value(self, t: T) -> Any:
        """Deserialize one value of type ``t``."""
        c = self.ws()
        if c is None:
            raise self.peek_error("EOF while parsing a value")
        if t.kind == "any":
            return self.parse_any()
        if t.kind == "option":
            if c == 0x6E:
                self.i += 1
                self.parse_ident(b"ull")
                return None
            assert t.inner is not None
            return self.value(t.inner)
        if t.kind == "struct":
            if c != 0x7B:
                raise self._invalid_type(c, t)
            return self.struct(t)
        if t.kind == "map":
            if c != 0x7B:
                raise self._invalid_type(c, t)
            raw = self.parse_any()
            assert t.inner is not None
            for v in raw.values():
                if t.inner.kind == "str" and not isinstance(v, str):
                    raise self.error(f"invalid type: {_unexpected(v)}, expected a string")
            return raw
        if t.kind == "seq":
            if c != 0x5B:
                raise self._invalid_type(c, t)
            self.i += 1
            out: list[Any] = []
            if self.ws() == 0x5D:
                self.i += 1
                return out
            assert t.inner is not None
            while True:
                out.append(self.value(t.inner))
                if self.end_or_comma(0x5D, "a list", "expected `,` or `]`"):
                    return out
        if t.kind == "enum":
            if c != 0x22:
                if c in (0x7B,):
                    raise self._invalid_type(c, t)
                raise self.peek_error("expected value")
            v = self.parse_str()
            if v not in t.variants:
                raise self.error(f"unknown variant `{v}`, {one_of(t.variants, 'variants')}")
            return v
        # scalars
        if c in (0x7B, 0x5B):
            raise self._invalid_type(c, t)
        v = self.parse_any()
        if t.kind == "bool":
            if not isinstance(v, bool):
                raise self.error(f"invalid type: {_unexpected(v)}, expected a boolean")
            return v
        if t.kind == "str":
            if not isinstance(v, str):
                raise self.error(f"invalid type: {_unexpected(v)}, expected a string")
            return v
        if t.kind == "uint":
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.error(f"invalid type: {_unexpected(v)}, expected {t.name}")
            if v < 0 or v >= (1 << t.bits):
                raise self.error(f"invalid value: integer `{v}`, expected {t.name}")
            return v
        raise AssertionError(t.kind)

    def _invalid_type(self, c: int, t: T) -> SerdeError:
        what = "map" if c == 0x7B else "sequence"
        if c not in (0x7B, 0x5B):
            v = self.parse_any()
            return self.error(f"invalid type: {_unexpected(v)}, expected {t.expecting()}")
        return self.error(f"invalid type: {what}, expected {t.expecting()}")

    def struct(self, t: T) -> dict[str, Any]:
        """Deserialize a struct (the ``{`` is at ``self.i``)."""
        self.i += 1
        names = [n for n, _ in t.fields]
        types = dict(t.fields)
        out: dict[str, Any] = {}
        c = self.ws()
        if c != 0x7D:
            while True:
                c = self.ws()
                if c is None:
                    raise self.peek_error("EOF while parsing an object")
                if c != 0x22:
                    raise self.peek_error("key must be a string")
                key = self.parse_str()
                key = t.aliases.get(key, key)
                if key not in types:
                    if t.deny_unknown:
                        raise self.error(f"unknown field `{key}`, {one_of(names, 'fields')}")
                    self.colon()
                    self.parse_any()
                else:
                    if key in out:
                        raise self.error(f"duplicate field `{key}`")
                    self.colon()
                    out[key] = self.value(types[key])
                if self.end_or_comma(0x7D, "an object", "expected `,` or `}`"):
                    break
        else:
            self.i += 1
        for name in names:
            if name in t.required and name not in out:
                raise self.error(f"missing field `{name}`")
        return out

    def finish(self) -> None:
        """Reject trailing non-whitespace."""
        if self.ws() is not None:
            raise self.peek_error("trailing characters")


def from_slice(data: bytes, t: T) -> Any:
    """Deserialize ``data`` as ``t`` or raise :class:`SerdeError`."""
    r = Reader(data)
    value = r.value(t)
    r.finish()
    return value
