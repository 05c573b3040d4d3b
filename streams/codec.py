"""JSON on the wire: orjson everywhere, one place, and what it cannot say.

JSON may spell a lone surrogate (``"\\ud800"``), which orjson refuses to read or write
although the standard library does both. Such a string is one bad value, not a bad
document: it is read (then refused by the record that holds it) and written escaped.
orjson also writes no integer beyond 64 bits; the standard library writes its digits.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from batchline.text import may_hold_surrogates


def dumps(value: Any, option: int | None = None) -> bytes:
    try:
        return orjson.dumps(value, option=option)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate or a very large integer
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raw = data.encode() if isinstance(data, str) else data
        if not may_hold_surrogates(raw):
            raise
        # What orjson refused for anything else the standard parser refuses too, but for
        # NaN and Infinity, which it is told to refuse.
        return json.loads(raw, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise orjson.JSONDecodeError(f"{name} is not JSON", name, 0)
