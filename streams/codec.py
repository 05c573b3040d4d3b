"""JSON on the wire: orjson everywhere, one place."""

from __future__ import annotations

from typing import Any

import orjson

dumps = orjson.dumps


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
