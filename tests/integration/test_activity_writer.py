"""The activity writer on its own: one set-based statement, no fallback to hide behind."""

from __future__ import annotations

from typing import Any

import asyncpg

from batchline.records import RecordResult
from batchline.vocabulary import RecordError, RecordStatus
from consumers.writers.activity import ActivityWriter
from consumers.writers.base import PendingRecord
from streams.envelopes import ChunkOptions, IngestChunk
from tests.integration.activities import activity


async def write(pg: asyncpg.Connection, records: list[Any], **chunk: Any) -> list[RecordResult]:
    """One chunk of ``records`` through the writer, in a transaction as the inserter runs it."""
    ingest = IngestChunk(entity="activity", records=records, **chunk)
    pending = [PendingRecord(i, r) for i, r in zip(ingest.record_indices(), records, strict=True)]
    async with pg.transaction():
        return await ActivityWriter().write(pg, ingest, pending)


async def test_one_chunk_inserts_reports_conflicts_and_keeps_input_order(
    pg: asyncpg.Connection, tag: str
) -> None:
    records = [activity(tag, 0), activity(tag, 1), activity(tag, 0), {"bad": True}]

    results = await write(pg, records)

    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [r.status for r in results] == [RecordStatus.INSERTED] * 2 + [RecordStatus.FAILED] * 2
    assert results[2].error is RecordError.UNIQUE_CONSTRAINT_VIOLATION
    assert results[3].error is RecordError.VALIDATION_ERROR
    first, second = (int(r.entity_id.removeprefix("pa-")) for r in results[:2] if r.entity_id)
    assert second == first + 1


async def test_a_record_whose_key_is_already_stored_fails_alone(
    pg: asyncpg.Connection, tag: str
) -> None:
    stored = activity(tag, 0)
    await write(pg, [stored])

    results = await write(pg, [activity(tag, 1), stored, activity(tag, 2)])

    assert [r.status for r in results] == [
        RecordStatus.INSERTED,
        RecordStatus.FAILED,
        RecordStatus.INSERTED,
    ]
    assert results[1].error is RecordError.UNIQUE_CONSTRAINT_VIOLATION
    count = "SELECT count(*) FROM activity WHERE coordinator_id = $1"
    assert await pg.fetchval(count, stored["coordinator_id"]) == 3


async def test_a_bad_record_fails_alone_with_its_own_errors(
    pg: asyncpg.Connection, tag: str
) -> None:
    records = [7, activity(tag, 0), activity(tag, 1, duration_minutes=0, extra=1), activity(tag, 2)]

    results = await write(pg, records)

    assert [r.status for r in results] == [
        RecordStatus.FAILED,
        RecordStatus.INSERTED,
        RecordStatus.FAILED,
        RecordStatus.INSERTED,
    ]
    assert results[0].details == [
        {
            "field": None,
            "message": "Input should be a valid dictionary or instance of Activity",
            "type": "model_type",
        }
    ]
    assert results[2].details == [
        {
            "field": "duration_minutes",
            "message": "Input should be greater than or equal to 1",
            "type": "greater_than_equal",
        },
        {"field": "extra", "message": "Extra inputs are not permitted", "type": "extra_forbidden"},
    ]


async def test_ignore_constraints_updates_the_existing_row_and_returns_its_old_image(
    pg: asyncpg.Connection, tag: str
) -> None:
    [created] = await write(pg, [activity(tag, 0, duration_minutes=10)])

    [updated] = await write(
        pg,
        [activity(tag, 0, duration_minutes=20)],
        options=ChunkOptions(ignore_constraints=True, publish_events=True),
    )

    assert updated.status is RecordStatus.UPDATED
    assert updated.entity_id == created.entity_id
    assert updated.old is not None
    assert updated.old["duration_minutes"] == 10
    assert updated.new is not None
    assert updated.new["duration_minutes"] == 20


async def test_ignore_constraints_applies_duplicates_in_index_order(
    pg: asyncpg.Connection, tag: str
) -> None:
    [created] = await write(pg, [activity(tag, 0, duration_minutes=5)])

    results = await write(
        pg,
        [activity(tag, 0, duration_minutes=6), activity(tag, 0, duration_minutes=7)],
        indices=[1, 2],
        record_count=3,
        options=ChunkOptions(ignore_constraints=True),
    )

    assert [(r.index, r.status, r.entity_id) for r in results] == [
        (1, RecordStatus.UPDATED, created.entity_id),
        (2, RecordStatus.UPDATED, created.entity_id),
    ]
    stored = await pg.fetchval(
        "SELECT duration_minutes FROM activity WHERE id = $1", created.entity_id
    )
    assert stored == 7
