"""Front door 3 over real HTTP, Kafka and PostgreSQL: the seed's /data/{entity} API."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import asyncpg

SEED_CATEGORY_ANSWER = (
    b'{"status":"success","data":{"description":"Technology","id":"tech-1"},'
    b'"meta":{"lastUpdateTimeUnix":0,"lastUpdateTimeISO":"T"}}'
)
SEED_DUPLICATE_ANSWER = (
    b'{"status":"error","error":{"reason":"Logical key tech-1 for Entity CATEGORY already exists"}}'
)
_TIMES = re.compile(rb'"lastUpdateTimeUnix":\d{13},"lastUpdateTimeISO":"[0-9T:.-]{23}Z"')


def _without_times(body: bytes) -> bytes:
    return _TIMES.sub(b'"lastUpdateTimeUnix":0,"lastUpdateTimeISO":"T"', body)


async def post(
    http: aiohttp.ClientSession, entity: str, data: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"/data/{entity}", json={"data": data}) as response:
        return response.status, await response.json()


async def test_seed_curl_example_and_its_duplicate_answer_byte_for_byte(
    http: aiohttp.ClientSession, pg: asyncpg.Connection
) -> None:
    body = b'{"data": {"id": "tech-1",\n        "description": "Technology"\n    }\n  }'
    headers = {"Content-Type": "application/json"}

    async with http.post("/data/category", data=body, headers=headers) as response:
        first_status, first = response.status, await response.read()
    async with http.post("/data/category", data=body, headers=headers) as response:
        second_status, second = response.status, await response.read()

    assert first_status == 200
    assert _without_times(first) == SEED_CATEGORY_ANSWER
    assert second_status == 400
    assert second == SEED_DUPLICATE_ANSWER
    stored = await pg.fetch("SELECT id, description FROM entity_category WHERE id = 'tech-1'")
    assert [tuple(r) for r in stored] == [("tech-1", "Technology")]
