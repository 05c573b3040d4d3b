"""JSON on the wire: orjson everywhere, one place, and what it cannot say.

JSON may spell a lone surrogate (``"\\ud800"``), which orjson refuses to read or write
although the standard library does both. Such a string is one bad value, not a bad
document: it is read (then refused by the record that holds it) and written escaped.
orjson also writes no integer beyond 64 bits; the standard library writes its digits.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# A \uXXXX escape of a UTF-16 surrogate: only the standard parser reads one that is alone.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
NUL = "\x00"


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate or a very large integer
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raw = data.encode() if isinstance(data, str) else data
        if not may_hold_surrogates(raw):
            raise
        # Strict enough: what orjson refused for anything else the standard parser refuses
        # too, apart from NaN and Infinity, which it is told to refuse.
        return json.loads(raw, parse_constant=_refuse_constant)


def may_hold_surrogates(data: bytes) -> bool:
    """Whether JSON text may spell a lone surrogate (an escape of any surrogate is there)."""
    return _SURROGATE_ESCAPE.search(data) is not None


def _refuse_constant(name: str) -> Any:
    raise orjson.JSONDecodeError(f"{name} is not JSON", name, 0)


def unstorable_text(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text`` (in ``text`` or ``jsonb``), or None."""
    if NUL in text:
        return "NUL (\\u0000) characters"
    if _SURROGATE.search(text):
        return "lone surrogates (\\ud800-\\udfff, which are no Unicode characters)"
    return None


def holds_unstorable_text(value: Any) -> str | None:
    """Why a JSON value cannot be stored: its first string (or name) that cannot be."""
    if isinstance(value, str):
        return unstorable_text(value)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = unstorable_text(key) or holds_unstorable_text(item)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = holds_unstorable_text(item)
            if problem:
                return problem
    return None


def escaped(text: str) -> str:
    """``text`` with NUL and lone surrogates written as JSON escapes, for messages."""
    if unstorable_text(text) is None:
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text.replace(NUL, "\\u0000"))
