"""Activities: validated per chunk, written by one statement per chunk (``sql.activities``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import asyncpg
from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
)

from batchline.activity import Activity
from batchline.records import FieldError, RecordDetails, RecordResult, field_errors
from batchline.vocabulary import RecordError, RecordStatus
from consumers.writers.base import EventRoute, PendingRecord
from sql import activities
from sql.activities import NaturalKey
from streams import topics
from streams.envelopes import ACTIVITY_ENTITY, IngestChunk

# One call for the whole chunk instead of one per record: a record that is no Activity
# comes back as it was, and only those are validated again, alone, for their errors.
_CHUNK = TypeAdapter(list[Annotated[Activity | Any, Field(union_mode="left_to_right")]])


def _errors(raw: Any) -> list[FieldError]:
    """Why ``raw`` is no Activity, in the words validating it on its own gives."""
    try:
        Activity.model_validate(raw)
    except ValidationError as exc:
        return field_errors(exc)
    raise AssertionError("a record the chunk's validation refused is valid on its own")


def _duplicate(index: int, key: NaturalKey, **found: Any) -> RecordResult:
    """A record whose unique key another has: ``existing_id`` (a stored row) or
    ``first_index`` (an earlier record of the same batch)."""
    coordinator_id, mentor_id, activity_type, activity_date = key
    named = {
        "coordinator_id": coordinator_id,
        "mentor_id": mentor_id,
        "activity_type": activity_type,
        "activity_date": activity_date.isoformat(),
    }
    details = RecordDetails(key=named, **found)
    return RecordResult.failed(index, RecordError.UNIQUE_CONSTRAINT_VIOLATION, details)


class ActivityWriter:
    entity = ACTIVITY_ENTITY

    def event_route(self, chunk: IngestChunk) -> EventRoute:
        return EventRoute(topics.ACTIVITY_EVENTS)

    operations = frozenset({"insert"})

    async def write(
        self, conn: asyncpg.Connection, chunk: IngestChunk, records: Sequence[PendingRecord]
    ) -> list[RecordResult]:
        results: dict[int, RecordResult] = {}
        accepted: dict[NaturalKey, tuple[int, Activity]] = {}
        superseded: dict[NaturalKey, list[int]] = {}
        validated = _CHUNK.validate_python([record.raw for record in records])
        for record, activity in zip(records, validated, strict=True):
            if not isinstance(activity, Activity):
                results[record.index] = RecordResult.failed(
                    record.index, RecordError.VALIDATION_ERROR, _errors(record.raw)
                )
                continue
            key = activity.natural_key
            if key in accepted:
                if chunk.options.ignore_constraints:
                    # Applied in index order, each takes over the row: the last one's values
                    # are what stays, and every one of them reports that row.
                    earlier, _ = accepted.pop(key)
                    superseded.setdefault(key, []).append(earlier)
                else:
                    # The first record with a key wins; later ones in the same chunk fail.
                    first, _ = accepted[key]
                    results[record.index] = _duplicate(record.index, key, first_index=first)
                    continue
            accepted[key] = (record.index, activity)

        if accepted:
            rows = list(accepted.values())
            values = [
                (
                    a.coordinator_id,
                    a.mentor_id,
                    a.activity_type,
                    a.activity_date,
                    a.duration_minutes,
                )
                for _, a in rows
            ]
            if chunk.options.ignore_constraints:
                returned = await activities.upsert(conn, values)
            else:
                # The ones whose natural key exists are left out of what comes back.
                returned = await activities.insert_new(conn, values)
            with_images = chunk.options.publish_events
            for row in returned:
                key = (
                    row["coordinator_id"],
                    row["mentor_id"],
                    row["activity_type"],
                    row["activity_date"],
                )
                index, _ = accepted.pop(key)
                previous = row["previous"] if chunk.options.ignore_constraints else None
                results[index] = RecordResult(
                    index=index,
                    status=RecordStatus.UPDATED if previous else RecordStatus.INSERTED,
                    entity_id=row["id"],
                    old=previous,
                    new=activities.row_dict(row) if with_images else None,
                )
                for earlier in superseded.get(key, ()):
                    results[earlier] = RecordResult(
                        index=earlier,
                        status=RecordStatus.UPDATED,
                        entity_id=row["id"],
                        old=previous,
                        new=results[index].new,
                    )
            # Whatever did not come back hit an existing row: which one, for the details.
            existing = await activities.existing_ids(conn, list(accepted)) if accepted else {}
            for key, (index, _) in accepted.items():
                results[index] = _duplicate(index, key, existing_id=existing.get(key))
        return [results[record.index] for record in records]
