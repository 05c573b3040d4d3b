"""JSON responses encoded by orjson (fast, and able to splice JSON text built by SQL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)
