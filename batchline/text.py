"""The NUL character: PostgreSQL stores it in neither text nor jsonb, so every front door and
the worker refuse it with the same words, found by the same check."""

from __future__ import annotations

from typing import Any

NUL = "\x00"
# How JSON spells it: a message that lacks this sequence holds no NUL in any string.
JSON_NUL = b"\\u0000"
NUL_NAME = "NUL (\\u0000) characters"
NUL_PROBLEM = f"text must not contain {NUL_NAME}"
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


def visible(text: str) -> str:
    """``text`` with NUL written as JSON spells it: a message must not carry the character."""
    return text.replace(NUL, "\\u0000")
