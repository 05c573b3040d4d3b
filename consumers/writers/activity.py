"""Activities: one ``INSERT … SELECT FROM unnest … ON CONFLICT … RETURNING`` per chunk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any

import asyncpg
from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
)

from batchline.activity import Activity
from batchline.records import RecordResult, validation_details
from batchline.vocabulary import RecordError, RecordStatus
from consumers.writers.base import EventRoute, PendingRecord
from sql.db import insert_resolving_conflicts
from streams import topics
from streams.envelopes import ACTIVITY_ENTITY, IngestChunk

# One call for the whole chunk instead of one per record: a record that is no Activity
# comes back as it was, and only those are validated again, alone, for their errors.
_CHUNK = TypeAdapter(list[Annotated[Activity | Any, Field(union_mode="left_to_right")]])


def _errors(raw: Any) -> list[dict[str, Any]]:
    """Why ``raw`` is no Activity, in the words validating it on its own gives."""
    try:
        Activity.model_validate(raw)
    except ValidationError as exc:
        return validation_details(exc)
    raise AssertionError("a record the chunk's validation refused is valid on its own")


_COLUMNS = "id, coordinator_id, mentor_id, activity_type, activity_date, duration_minutes"

# The chunk travels as one JSON array of rows: PostgreSQL unpacks it in C, where five
# bound arrays cost asyncpg a Python-level type check per element.
_INPUT = """
SELECT e->>0 AS c, e->>1 AS m, e->>2 AS t, (e->>3)::date AS d, (e->>4)::int AS n, position
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS input(e, position)
"""

_INSERT_NEW = f"""
INSERT INTO activity (coordinator_id, mentor_id, activity_type, activity_date, duration_minutes)
SELECT c, m, t, d, n FROM ({_INPUT}) AS input ORDER BY position
RETURNING {_COLUMNS}
"""

# A conflicting record still draws an id, leaving a gap; probing the key first to avoid
# that cost a quarter of this statement for every record.
_INSERT = f"""
INSERT INTO activity (coordinator_id, mentor_id, activity_type, activity_date, duration_minutes)
SELECT c, m, t, d, n FROM ({_INPUT}) AS input ORDER BY position
ON CONFLICT ON CONSTRAINT activity_natural_key DO NOTHING
RETURNING {_COLUMNS}
"""

# Retried with ignore_constraints: the existing row takes the retried values.
_UPSERT = f"""
WITH input AS ({_INPUT}), previous AS (
    SELECT a.* FROM activity a
    JOIN input i ON (a.coordinator_id, a.mentor_id, a.activity_type, a.activity_date)
                  = (i.c, i.m, i.t, i.d)
)
INSERT INTO activity AS a
    (coordinator_id, mentor_id, activity_type, activity_date, duration_minutes)
SELECT c, m, t, d, n FROM input ORDER BY position
ON CONFLICT ON CONSTRAINT activity_natural_key
DO UPDATE SET duration_minutes = EXCLUDED.duration_minutes, updated_at = now()
RETURNING {", ".join("a." + c.strip() for c in _COLUMNS.split(","))},
          (SELECT to_jsonb(p) - 'created_at' - 'updated_at' FROM previous p WHERE p.id = a.id)
              AS previous
"""


def _row_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "coordinator_id": row["coordinator_id"],
        "mentor_id": row["mentor_id"],
        "activity_type": row["activity_type"],
        "activity_date": row["activity_date"].isoformat(),
        "duration_minutes": row["duration_minutes"],
    }


class ActivityWriter:
    entity = ACTIVITY_ENTITY

    def event_route(self, chunk: IngestChunk) -> EventRoute:
        return EventRoute(topics.ACTIVITY_EVENTS)

    operations = frozenset({"insert"})

    async def write(
        self, conn: asyncpg.Connection, chunk: IngestChunk, records: Sequence[PendingRecord]
    ) -> list[RecordResult]:
        results: dict[int, RecordResult] = {}
        accepted: dict[tuple[str, str, str, date], tuple[int, Activity]] = {}
        superseded: dict[tuple[str, str, str, date], list[int]] = {}
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
                    results[record.index] = RecordResult.failed(
                        record.index, RecordError.UNIQUE_CONSTRAINT_VIOLATION
                    )
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
                returned = await conn.fetch(_UPSERT, values)
            else:
                # The ones whose natural key exists are left out of what comes back.
                returned = await insert_resolving_conflicts(conn, _INSERT_NEW, _INSERT, values)
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
                    new=_row_dict(row) if with_images else None,
                )
                for earlier in superseded.get(key, ()):
                    results[earlier] = RecordResult(
                        index=earlier,
                        status=RecordStatus.UPDATED,
                        entity_id=row["id"],
                        old=previous,
                        new=results[index].new,
                    )
            # Whatever did not come back hit an existing row.
            for index, _ in accepted.values():
                results[index] = RecordResult.failed(index, RecordError.UNIQUE_CONSTRAINT_VIOLATION)
        return [results[record.index] for record in records]
