"""What every entity writer provides to the inserter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from batchline.records import RecordResult
from streams.envelopes import IngestChunk


@dataclass(slots=True)
class PendingRecord:
    # Not frozen: one is built per record in the inserter's hot path, and a frozen
    # dataclass sets each field through object.__setattr__, which costs more.
    index: int
    raw: Any


@dataclass(frozen=True, slots=True)
class EventRoute:
    topic: str
    headers: tuple[tuple[str, bytes], ...] = ()
    # FOLIO's event value has no ``entity`` field; batchline's own events name it.
    entity_in_value: bool = True
    # The tenant the event value names, when the writer decides it (else the chunk's).
    tenant: str | None = None


class ChunkRejected(Exception):
    """The chunk as a whole cannot be written (e.g. an all-or-nothing list with a bad record).

    Carries the per-record results to report instead; nothing of the chunk is stored.
    """

    def __init__(self, results: list[RecordResult]) -> None:
        super().__init__(f"{len(results)} records rejected")
        self.results = results


class EntityWriter(Protocol):
    entity: str
    # Envelope operations this writer takes; others are dead-lettered at the route stage.
    operations: frozenset[str]

    def event_route(self, chunk: IngestChunk) -> EventRoute: ...

    async def write(
        self, conn: asyncpg.Connection, chunk: IngestChunk, records: Sequence[PendingRecord]
    ) -> list[RecordResult]:
        """Write ``records`` inside the caller's transaction; one result per record."""
        ...
