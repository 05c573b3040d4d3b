"""Building activity records and reading back what the API answers."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg

BASE = "/api/v1/batch-inserts"
# What every JSON body the API takes must say it is.
JSON = {"Content-Type": "application/json"}


def activity(tag: str, n: int, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "coordinator_id": f"coord-{tag}",
        "mentor_id": f"mentor-{n}",
        "activity_type": "group_workshop",
        "activity_date": "2026-03-28",
        "duration_minutes": 120,
    }
    record.update(overrides)
    return record


async def post_batch(
    http: aiohttp.ClientSession, records: list[Any], **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(BASE, json={"activities": records}, **kwargs) as response:
        return response.status, await response.json()


async def stored_activities(pg: asyncpg.Connection, tag: str) -> int:
    """Activity rows of the test's coordinator, as ``activity(tag, ...)`` builds them."""
    count: int = await pg.fetchval(
        "SELECT count(*) FROM activity WHERE coordinator_id = $1", f"coord-{tag}"
    )
    return count
