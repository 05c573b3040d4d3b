"""The generic entity writer on its own: what a unique-key conflict says it collided with."""

from __future__ import annotations

from typing import Any

import asyncpg

from batchline.entities.schema import load_registry
from batchline.records import RecordResult
from batchline.settings import Settings
from batchline.vocabulary import RecordError, RecordStatus
from consumers.writers.base import PendingRecord
from consumers.writers.generic import GenericEntityWriter
from streams.envelopes import IngestChunk


async def write(
    pg: asyncpg.Connection, settings: Settings, records: list[Any]
) -> list[RecordResult]:
    registry = load_registry(settings.entities_dir)
    writer = GenericEntityWriter(registry, registry.require("category"))
    ingest = IngestChunk(entity=writer.entity, records=records, operation="insert")
    pending = [PendingRecord(i, r) for i, r in zip(ingest.record_indices(), records, strict=True)]
    async with pg.transaction():
        return await writer.write(pg, ingest, pending)


async def test_a_duplicate_key_names_the_stored_record_or_the_earlier_record_of_the_chunk(
    pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    stored = f"{tag}/stored"
    await write(pg, settings, [{"id": stored}])

    results = await write(
        pg, settings, [{"id": f"{tag}-new"}, {"id": stored}, {"id": f"{tag}-new"}]
    )

    assert [r.status for r in results] == [RecordStatus.INSERTED] + [RecordStatus.FAILED] * 2
    assert results[1].error is results[2].error is RecordError.UNIQUE_CONSTRAINT_VIOLATION
    assert results[1].details == {
        "reason": f"Logical key {stored} for Entity CATEGORY already exists",
        "lk": stored,
        "existing_id": f"{tag}%2Fstored",
    }
    assert results[2].details == {
        "reason": f"Logical key {tag}-new for Entity CATEGORY already exists",
        "lk": f"{tag}-new",
        "first_index": 0,
    }
