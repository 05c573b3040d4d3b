"""Text PostgreSQL cannot store, in neither ``text`` nor ``jsonb``: the NUL character and
lone surrogates (which JSON can spell, ``"\\ud800"``, but are no Unicode characters). Every
front door and the worker refuse them with the same words, found by the same checks."""

from __future__ import annotations

import re
from typing import Any

NUL = "\x00"
# How JSON spells it: a message that lacks this sequence holds no NUL in any string.
JSON_NUL = b"\\u0000"
NUL_NAME = "NUL (\\u0000) characters"
NUL_PROBLEM = f"text must not contain {NUL_NAME}"
LONE_SURROGATES_NAME = "lone surrogates (\\ud800-\\udfff, which are no Unicode characters)"
_SURROGATE = re.compile("[\ud800-\udfff]")
# A \uXXXX escape of a UTF-16 surrogate: a message without one holds no lone surrogate.
_JSON_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")
# JSON Schema's way to say it, in descriptions of what is accepted.
NO_NUL_PATTERN = "^[^\\u0000]*$"


def holds_nul(value: Any) -> bool:
    """Whether ``value`` (text, or a JSON document's keys and values) holds a NUL."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


def unstorable_text(text: str) -> str | None:
    """What in ``text`` PostgreSQL cannot store (``NUL_NAME`` or ``LONE_SURROGATES_NAME``)."""
    if NUL in text:
        return NUL_NAME
    if _SURROGATE.search(text):
        return LONE_SURROGATES_NAME
    return None


def holds_unstorable_text(value: Any) -> str | None:
    """``unstorable_text`` of the first string (or name) of a JSON value that has some."""
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


def may_hold_unstorable(json_text: bytes) -> bool:
    """Whether JSON text may hold a NUL or a lone surrogate in a string: it spells one."""
    return JSON_NUL in json_text or may_hold_surrogates(json_text)


def may_hold_surrogates(json_text: bytes) -> bool:
    """Whether JSON text spells a surrogate (alone or in a pair) in a string."""
    return _JSON_SURROGATE.search(json_text) is not None


def visible(text: str) -> str:
    """``text`` with NUL and lone surrogates written as JSON spells them: a message must not
    carry those characters."""
    if unstorable_text(text) is None:
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text.replace(NUL, "\\u0000"))
