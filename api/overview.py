"""``GET /ops/overview``: what an operator checks first, from what batchline already keeps.

Batches by status (PostgreSQL), consumer lag per partition of the inserter's and the
projector's topics (the groups' committed offsets against the partitions' ends), and dead
letters by status (the dead-letter topic read to its end, as ``/ops/dlq/messages`` does).
A part the broker cannot answer is reported as unavailable, the rest still answers.
"""

from __future__ import annotations

import collections
import contextlib
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from api import keys
from api.dlq import TAG
from api.errors import error_answers
from api.openapi import Answer, ApiOperation, add_operation
from api.responses import json_response
from sql import batches
from sql.replay_runs import ReplayRuns
from streams import dlq, topics
from streams.lag import LagUnavailable, consumer_lag
from streams.reader import TopicUnreadable

_BATCH_STATUSES = ("processing", "completed", "failed")


class PartitionLag(BaseModel):
    group: str
    topic: str
    partition: int
    committed: int | None = Field(description="null before the group's first commit.")
    end: int
    lag: int


class Overview(BaseModel):
    batches: dict[str, int] = Field(description="Operations by status.")
    consumer_lag: list[PartitionLag] | None = Field(description="null: see unavailable.")
    dead_letters: dict[str, int] | None = Field(description="By status; null: see unavailable.")
    unavailable: dict[str, str] = Field(description="Why a part could not be read.")


async def overview(request: web.Request) -> web.StreamResponse:
    """Batches by status, consumer lag per partition, dead letters by status."""
    app = request.app
    settings, pool = app[keys.SETTINGS], app[keys.POOL]
    counted = await batches.count_by_status(pool)
    body: dict[str, Any] = {
        "batches": {status: counted.get(status, 0) for status in _BATCH_STATUSES},
        "consumer_lag": None,
        "dead_letters": None,
        "unavailable": {},
    }
    groups = [
        (settings.librdkafka_consumer_config(settings.consumer_group), topics.INGEST),
        (settings.librdkafka_consumer_config(settings.projector_group), topics.OUTCOMES),
    ]
    try:
        body["consumer_lag"] = [
            {
                "group": lag.group,
                "topic": lag.topic,
                "partition": lag.partition,
                "committed": lag.committed,
                "end": lag.end,
                "lag": lag.lag,
            }
            for lag in await consumer_lag(groups)
        ]
    except LagUnavailable as exc:
        body["unavailable"]["consumer_lag"] = str(exc)
    try:
        by_status: collections.Counter[str] = collections.Counter(
            {status.value: 0 for status in dlq.LetterStatus}
        )
        found = dlq.entries(settings, ReplayRuns(pool), dlq.DeadLetterFilter())
        async with contextlib.aclosing(found):
            async for entry in found:
                by_status[entry.status.value] += 1
        body["dead_letters"] = dict(by_status)
    except TopicUnreadable as exc:
        body["unavailable"]["dead_letters"] = str(exc)
    return json_response(body)


def add_routes(app: web.Application) -> None:
    add_operation(
        app,
        ApiOperation(
            "GET",
            "/ops/overview",
            "getOperationsOverview",
            "Batches by status, consumer lag per partition, dead letters by status",
            TAG,
            (Answer(200, "What an operator checks first", Overview), *error_answers()),
        ),
        overview,
    )
