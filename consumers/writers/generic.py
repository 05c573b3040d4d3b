"""Generic (YAML-declared) entities: one writer per entity, set-based SQL per chunk.

Per chunk: convert every record (conversion and validation problems are per record), find
duplicate keys inside the chunk, check references with one query per ENTITY_REF field
(``sql.entity_rows`` locks the referenced rows so they cannot vanish before commit; a real
FOREIGN KEY backs it), then ONE statement writes all the records left. An atomic chunk (a
list POSTed over REST) with any failed record raises ``ChunkRejected``: nothing is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from batchline.entities.schema import EntitySchema, FieldSpec, FieldType, Registry
from batchline.entities.values import Converted, FieldProblem, Values, sql_text
from batchline.records import RecordDetails, RecordResult
from batchline.vocabulary import RecordError, RecordStatus
from consumers.writers.base import ChunkRejected, EventRoute, PendingRecord
from sql import entity_rows
from sql.entity_rows import EntityWrites
from streams import topics
from streams.envelopes import IngestChunk

NOT_STORED = "Not stored: another record of the same list failed"


@dataclass
class _Accepted:
    index: int
    values: dict[str, Any]
    key: tuple[Any, ...]
    # PATCH: the fields the record sets.
    present: list[str] = field(default_factory=list)


class GenericEntityWriter:
    operations = frozenset({"insert", "update", "patch", "delete"})

    def __init__(self, registry: Registry, schema: EntitySchema) -> None:
        self.entity = schema.key
        self.schema = schema
        self._registry = registry
        self._values = Values(registry)
        self._rows = EntityWrites(registry, schema)

    def event_route(self, chunk: IngestChunk) -> EventRoute:
        return EventRoute(topics.entity_events_topic(self.schema.name))

    async def write(
        self, conn: asyncpg.Connection, chunk: IngestChunk, records: Sequence[PendingRecord]
    ) -> list[RecordResult]:
        operation = chunk.operation
        results: dict[int, RecordResult] = {}
        accepted = self._convert(operation, records, results)
        if operation == "delete":
            accepted = await self._not_referenced(conn, accepted, results)
        else:
            accepted = await self._references_exist(conn, operation, accepted, results)
        if chunk.options.atomic and results:
            raise ChunkRejected(self._all_or_nothing(records, results))
        if accepted:
            await self._store(conn, operation, accepted, results)
        ordered = [results[r.index] for r in records]
        if chunk.options.atomic and any(r.status is RecordStatus.FAILED for r in ordered):
            raise ChunkRejected(self._all_or_nothing(records, results))
        return ordered

    # --- per record ---------------------------------------------------------------------------

    def _convert(
        self, operation: str, records: Sequence[PendingRecord], results: dict[int, RecordResult]
    ) -> list[_Accepted]:
        accepted: dict[tuple[Any, ...], _Accepted] = {}
        for record in records:
            if operation == "delete":
                converted = self._values.lk_values(self.schema, record.raw)
            else:
                converted = self._values.record(
                    self.schema, record.raw, partial=operation == "patch"
                )
                if operation == "patch" and converted.ok:
                    self._require_key(converted)
            if not converted.ok:
                results[record.index] = self._refused(record.index, converted)
                continue
            key = self._values.lk_of(self.schema, converted.values)
            if key in accepted:
                results[record.index] = self._failed(
                    record.index,
                    RecordError.UNIQUE_CONSTRAINT_VIOLATION,
                    self._duplicate_reason(operation, key),
                    lk=self._values.lk_text(self.schema, key),
                    first_index=accepted[key].index,
                )
                continue
            present = [n for n in converted.values if n not in self.schema.lk]
            accepted[key] = _Accepted(record.index, converted.values, key, present)
        return list(accepted.values())

    def _require_key(self, converted: Converted) -> None:
        for name in self.schema.lk:
            if name not in converted.values:
                converted.problems.append(
                    FieldProblem(name, "validation", "required: it identifies the record")
                )

    def _refused(self, index: int, converted: Converted) -> RecordResult:
        refusal = converted.refusal(self.schema)
        error = (
            RecordError.CONVERSION_ERROR
            if refusal.kind == "conversion"
            else RecordError.VALIDATION_ERROR
        )
        return self._failed(
            index,
            error,
            refusal.reason,
            errors=refusal.errors,
            fieldValidationErrors=refusal.fields,
        )

    def _duplicate_reason(self, operation: str, key: tuple[Any, ...]) -> str:
        text = self._values.lk_text(self.schema, key)
        if operation == "insert":
            return f"Logical key {text} for Entity {self.schema.name} already exists"
        return f"Logical key {text} for Entity {self.schema.name} appears twice in the list"

    def _failed(self, index: int, error: RecordError, reason: str, **details: Any) -> RecordResult:
        return RecordResult.failed(index, error, RecordDetails(reason=reason, **details))

    def _all_or_nothing(
        self, records: Sequence[PendingRecord], results: dict[int, RecordResult]
    ) -> list[RecordResult]:
        """Every record of a rejected atomic chunk: its own failure, or 'not stored'."""
        return [
            results[r.index]
            if r.index in results and results[r.index].status is RecordStatus.FAILED
            else self._failed(r.index, RecordError.NOT_PROCESSED, NOT_STORED)
            for r in records
        ]

    # --- references ---------------------------------------------------------------------------

    async def _references_exist(
        self,
        conn: asyncpg.Connection,
        operation: str,
        accepted: list[_Accepted],
        results: dict[int, RecordResult],
    ) -> list[_Accepted]:
        missing_by_index: dict[int, tuple[FieldSpec, Any]] = {}
        for spec in self.schema.fields:
            if spec.type is not FieldType.ENTITY_REF:
                continue
            wanted = {
                sql_text(a.values[spec.name])
                for a in accepted
                if a.values.get(spec.name) is not None
            }
            if not wanted:
                continue
            target = self._registry.ref_target(spec)
            found = await self._existing_keys(conn, target, sorted(wanted))
            if operation == "insert" and target.key == self.schema.key:
                # A list may hold both the referenced record and the one referencing it.
                found |= {sql_text(a.key[0]) for a in accepted}
            for a in accepted:
                value = a.values.get(spec.name)
                if value is not None and sql_text(value) not in found:
                    missing_by_index.setdefault(a.index, (spec, value))
        for index, (spec, value) in missing_by_index.items():
            target = self._registry.ref_target(spec)
            results[index] = self._failed(
                index,
                RecordError.REFERENCE_NOT_FOUND,
                f"Field {spec.name} references {target.name} record {sql_text(value)},"
                " which does not exist",
                field=spec.name,
                entity=target.name,
                value=value,
            )
        return [a for a in accepted if a.index not in missing_by_index]

    async def _existing_keys(
        self, conn: asyncpg.Connection, target: EntitySchema, keys: list[str]
    ) -> set[str]:
        return await entity_rows.existing_keys(conn, self._registry, target, keys)

    async def _not_referenced(
        self,
        conn: asyncpg.Connection,
        accepted: list[_Accepted],
        results: dict[int, RecordResult],
    ) -> list[_Accepted]:
        """Deleting a record other records point at would break them: refuse it."""
        if not accepted:
            return accepted
        keys = sorted({sql_text(a.key[0]) for a in accepted})
        in_use: dict[str, str] = {}
        for other, spec in self._registry.referrers(self.schema):
            for key in await entity_rows.referring_keys(conn, self._registry, other, spec, keys):
                in_use.setdefault(key, f"{other.name}.{spec.name}")
        kept = []
        for a in accepted:
            referrer = in_use.get(sql_text(a.key[0])) if len(a.key) == 1 else None
            if referrer is None:
                kept.append(a)
                continue
            text = self._values.lk_text(self.schema, a.key)
            results[a.index] = self._failed(
                a.index,
                RecordError.REFERENCE_IN_USE,
                f"EntityRecord with id {text} of {self.schema.name} is referenced by {referrer}",
                referenced_by=referrer,
            )
        return kept

    # --- the one write per chunk --------------------------------------------------------------

    async def _store(
        self,
        conn: asyncpg.Connection,
        operation: str,
        accepted: list[_Accepted],
        results: dict[int, RecordResult],
    ) -> None:
        by_key = {a.key: a for a in accepted}
        previous: dict[tuple[Any, ...], dict[str, Any]] = {}
        if operation == "insert":
            rows = await self._rows.insert(conn, [a.values for a in accepted])
            status = RecordStatus.INSERTED
        elif operation == "delete":
            rows = await self._rows.delete(conn, [a.values for a in accepted])
            status = RecordStatus.DELETED
        else:
            locked = await self._rows.lock_existing(conn, [a.values for a in accepted])
            for row in locked:
                rendered = self._values.render(self.schema, row)
                previous[self._key_of(rendered)] = rendered
            found = [a for a in accepted if a.key in previous]
            if operation == "update":
                rows = await self._rows.update(conn, [a.values for a in found])
            else:
                payload = [a.values | {"_present": a.present} for a in found]
                rows = await self._rows.patch(conn, payload)
            status = RecordStatus.UPDATED
        for row in rows:
            rendered = self._values.render(self.schema, row)
            key = self._key_of(rendered)
            record = by_key.pop(key)
            results[record.index] = RecordResult(
                index=record.index,
                status=status,
                entity_id=self._values.lk_id(self.schema, key),
                old=rendered if status is RecordStatus.DELETED else previous.get(key),
                new=None if status is RecordStatus.DELETED else rendered,
            )
        for record in by_key.values():
            text = self._values.lk_text(self.schema, record.key)
            if operation == "insert":
                results[record.index] = self._failed(
                    record.index,
                    RecordError.UNIQUE_CONSTRAINT_VIOLATION,
                    f"Logical key {text} for Entity {self.schema.name} already exists",
                    lk=text,
                    # A record's id is its logical key (as it appears in its URL).
                    existing_id=self._values.lk_id(self.schema, record.key),
                )
            else:
                results[record.index] = self._failed(
                    record.index,
                    RecordError.RECORD_NOT_FOUND,
                    f"EntityRecord with id {text} not found for {self.schema.name}",
                    lk=text,
                )

    def _key_of(self, rendered: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(rendered[name] for name in self.schema.lk)


def entity_writers(registry: Registry) -> dict[str, GenericEntityWriter]:
    return {entity.key: GenericEntityWriter(registry, entity) for entity in registry}
