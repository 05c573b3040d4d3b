"""FOLIO instances: upsert by id with ``_version`` optimistic locking, one statement per chunk.

Stored as FOLIO stores them, ``id uuid`` + ``jsonb``. A record without ``id`` gets one and a
record without ``hrid`` gets the next ``in00000000001``-style number (an update keeps the
stored one). ``_version`` is 1 on create and +1 per update; an update whose ``_version`` is
not the stored one fails with FOLIO's optimistic-locking message, as a missing ``_version``
does (FOLIO compares them with IS DISTINCT FROM).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from batchline.records import RecordDetails, RecordResult, details_json, field_errors
from batchline.vocabulary import RecordError, RecordStatus
from consumers.writers.base import EventRoute, PendingRecord
from sql import instances
from streams import topics
from streams.envelopes import INSTANCE_ENTITY, IngestChunk

TENANT_HEADER = "folio.tenantId"
NonEmpty = Annotated[StrictStr, Field(min_length=1)]


class Instance(BaseModel):
    """The fields batchline checks; every other field is stored as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: uuid.UUID | None = None
    hrid: NonEmpty | None = None
    source: NonEmpty
    title: NonEmpty
    instanceTypeId: uuid.UUID
    version: StrictInt | None = Field(default=None, alias="_version")


_MESSAGES = {
    "missing": "must not be null",
    "uuid_parsing": "must be a UUID",
    "uuid_type": "must be a UUID",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "int_type": "must be an integer",
}


def validation_message(error: ValidationError) -> str:
    """pydantic's errors the way FOLIO words them: ``title must not be null; …``."""
    parts = []
    for item in error.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"])
        null = item["type"].endswith("_type") and item.get("input", ...) is None
        message = _MESSAGES["missing"] if null else _MESSAGES.get(item["type"], item["msg"])
        parts.append(f"{field} {message}" if field else message)
    return "; ".join(parts)


def optimistic_locking_message(instance_id: str, stored: Any, requested: Any) -> str:
    """FOLIO's text, to the letter (PostgreSQL prints a NULL as ``<NULL>``)."""

    def shown(version: Any) -> str:
        return "<NULL>" if version is None else str(version)

    return (
        f"Cannot update record {instance_id} because it has been changed (optimistic locking): "
        f"Stored _version is {shown(stored)}, _version of request is {shown(requested)}"
    )


@dataclass(frozen=True, slots=True)
class _Candidate:
    index: int
    id: uuid.UUID
    doc: dict[str, Any]
    version: int | None
    hrid: str | None


class InstanceWriter:
    entity = INSTANCE_ENTITY
    operations = frozenset({"upsert"})

    def __init__(self, env: str, default_tenant: str) -> None:
        self._env = env
        self._default_tenant = default_tenant

    def event_route(self, chunk: IngestChunk) -> EventRoute:
        tenant = chunk.options.tenant or self._default_tenant
        return EventRoute(
            topics.instance_events_topic(self._env, tenant),
            ((TENANT_HEADER, tenant.encode()),),
            entity_in_value=False,
            tenant=tenant,
        )

    async def write(
        self, conn: asyncpg.Connection, chunk: IngestChunk, records: Sequence[PendingRecord]
    ) -> list[RecordResult]:
        results: dict[int, RecordResult] = {}
        # The n-th record with an id goes into statement n: one row cannot be upserted twice
        # in one statement, and FOLIO applies them one after the other.
        rounds: list[list[_Candidate]] = []
        seen: Counter[uuid.UUID] = Counter()
        for record in records:
            candidate = self._candidate(record, results)
            if candidate is None:
                continue
            position = seen[candidate.id]
            seen[candidate.id] += 1
            if position == len(rounds):
                rounds.append([])
            rounds[position].append(candidate)
        for candidates in rounds:
            results.update(await self._upsert(conn, candidates))
        return [results[record.index] for record in records]

    def _candidate(
        self, record: PendingRecord, results: dict[int, RecordResult]
    ) -> _Candidate | None:
        if not isinstance(record.raw, dict):
            results[record.index] = RecordResult.failed(
                record.index,
                RecordError.VALIDATION_ERROR,
                RecordDetails(message="an instance must be a JSON object"),
            )
            return None
        try:
            instance = Instance.model_validate(record.raw)
        except ValidationError as exc:
            results[record.index] = RecordResult.failed(
                record.index,
                RecordError.VALIDATION_ERROR,
                RecordDetails(message=validation_message(exc), fields=field_errors(exc)),
            )
            return None
        instance_id = instance.id or uuid.uuid4()
        return _Candidate(record.index, instance_id, record.raw, instance.version, instance.hrid)

    async def _upsert(
        self, conn: asyncpg.Connection, candidates: Sequence[_Candidate]
    ) -> dict[int, RecordResult]:
        rows = await instances.upsert(
            conn,
            [c.id for c in candidates],
            [c.doc for c in candidates],
            [c.version for c in candidates],
            [c.hrid for c in candidates],
        )
        by_id = {c.id: c for c in candidates}
        results: dict[int, RecordResult] = {}
        for row in rows:
            candidate = by_id.pop(row["id"])
            created = row["created"]
            results[candidate.index] = RecordResult(
                index=candidate.index,
                status=RecordStatus.INSERTED if created else RecordStatus.UPDATED,
                entity_id=str(row["id"]),
                old=None if created else row["old"],
                new=row["jsonb"],
            )
        if by_id:
            results.update(await self._refused(conn, list(by_id.values())))
        return results

    async def _refused(
        self, conn: asyncpg.Connection, candidates: Sequence[_Candidate]
    ) -> dict[int, RecordResult]:
        """Why rows were not written: their stored ``_version`` or ``hrid`` differ."""
        stored = await instances.versions(conn, [c.id for c in candidates])
        results = {}
        for candidate in candidates:
            row = stored[candidate.id]
            instance_id = str(candidate.id)
            version = row["version"]
            if version != candidate.version:
                error = RecordError.OPTIMISTIC_LOCKING
                message = optimistic_locking_message(instance_id, version, candidate.version)
            else:
                error = RecordError.VALIDATION_ERROR
                message = (
                    f"The hrid field cannot be changed: new={candidate.hrid}, old={row['hrid']}"
                )
            results[candidate.index] = RecordResult(
                index=candidate.index,
                status=RecordStatus.FAILED,
                entity_id=instance_id,
                error=error,
                details=details_json(RecordDetails(message=message)),
            )
        return results
