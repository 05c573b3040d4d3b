"""Building instance files, posting them to the bulk front door, reading back what it wrote."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from batchline.settings import Settings

BULK = "/instance-storage/instances/bulk"
INSTANCE_TYPE = "6312d172-f0cf-40f6-b27d-9fa8feaf332f"


def instance(tag: str, n: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "source": "MARC",
        "title": f"Title {n} of {tag}",
        "instanceTypeId": INSTANCE_TYPE,
    }
    record.update(fields)
    return record


def new_id() -> str:
    return str(uuid.uuid4())


def storage_root(settings: Settings) -> Path:
    """The local directory the API reads from when BATCHLINE_STORAGE_URL is unset."""
    return settings.data_dir / "storage"


def _line(line: Any) -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        return line.encode()
    return orjson.dumps(line)


def write_file(settings: Settings, name: str, lines: list[Any]) -> list[bytes]:
    """An NDJSON file under ``name``: dicts become JSON, bytes and str go in as they are."""
    raw = [_line(line) for line in lines]
    path = storage_root(settings) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in raw))
    return raw


def read_file(settings: Settings, name: str) -> bytes:
    return (storage_root(settings) / name).read_bytes()


async def post_bulk(
    http: aiohttp.ClientSession, body: Any, tenant: str | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = {"X-Okapi-Tenant": tenant} if tenant else {}
    async with http.post(BULK, json=body, headers=headers) as response:
        if response.content_type == "application/json":
            return response.status, await response.json(), response
        return response.status, await response.text(), response
