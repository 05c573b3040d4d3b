"""The inserter: one ingest chunk -> entity rows + its ledger row in ONE transaction -> one
outcome message.

Per message, in order (``Inserter.process``): decode -> route -> write (one transaction,
bounded retries for permanent errors and unbounded, paused ones for transient errors such
as the database restarting) -> publish the outcomes and domain events -> return, so Faust
acknowledges the offset after the sink is flushed. A step that finds the message invalid
raises ``InvalidMessage``; ``Inserter.handle`` is the one place that dead-letters it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import orjson
import pydantic_core
from pydantic import ValidationError

from batchline.metrics import Metrics
from batchline.records import FieldError, RecordDetails, RecordResult
from batchline.retry import RetryPolicy
from batchline.text import (
    NUL_NAME,
    holds_unstorable_text,
    may_hold_surrogates,
    may_hold_unstorable,
)
from batchline.vocabulary import RecordError, RecordStatus
from consumers import domain_events
from consumers.writers.base import ChunkRejected, EntityWriter, PendingRecord
from sql import batches, db, ledger, outbox
from sql.db import is_transient
from streams import codec, topics
from streams.admin import TopicCreationError, TopicEnsurer
from streams.deadletter import ORIGIN_HEADER, DeadLetter, DeadLetterPolicy, InvalidMessage, Stage
from streams.envelopes import IngestChunk
from streams.events import DomainEvent, encode_outcomes, stable_event_id
from streams.messages import ConsumedMessage
from streams.producer import AsyncProducer, OutgoingMessage

log = logging.getLogger(__name__)

_EVENT_TYPES: dict[RecordStatus, Literal["CREATE", "UPDATE", "DELETE"]] = {
    RecordStatus.INSERTED: "CREATE",
    RecordStatus.UPDATED: "UPDATE",
    RecordStatus.DELETED: "DELETE",
}


class BatchIndexReused(Exception):
    """A chunk names records that a different chunk of the same batch attempt wrote."""

    def __init__(self, batch_id: str, indices: Sequence[int]) -> None:
        shown = ", ".join(map(str, indices[:10])) + (" ..." if len(indices) > 10 else "")
        super().__init__(
            f"batch {batch_id!r} already has records {shown} from a different chunk;"
            " a batch id and index name one record (use a new batch id)"
        )


class BatchMismatch(Exception):
    """A chunk that disagrees with its batch's header on what the batch is."""

    def __init__(self, batch_id: str, field: str, stored: object, sent: object) -> None:
        super().__init__(
            f"batch {batch_id!r} has {field} {stored!r}, this chunk says {sent!r};"
            " chunks of a batch must agree (use a new batch id)"
        )


class BatchTooLarge(Exception):
    """A chunk starting a batch of more records than a Kafka-produced batch may have."""

    def __init__(self, batch_id: str, record_count: int, max_records: int) -> None:
        super().__init__(
            f"batch {batch_id!r} says it has {record_count} records; a batch produced to"
            f" Kafka may have at most {max_records} (BATCHLINE_MAX_RECORDS_PER_BATCH)"
        )


class UnknownEntity(Exception):
    def __init__(self, entity: str) -> None:
        super().__init__(f"no writer for entity {entity!r}")


def decode_chunk(message: ConsumedMessage) -> IngestChunk:
    if message.value is None:
        raise InvalidMessage(Stage.DECODE, ValueError("message has no value"))
    try:
        # pydantic's own JSON parser, then validation of the Python objects it built: cheaper
        # than model_validate_json, which builds every record's values a second time on the
        # way to list[Any] (README, Performance). The same parser accepts the same documents
        # (nesting limit included).
        parsed = pydantic_core.from_json(message.value, cache_strings="keys")
        return IngestChunk.model_validate(parsed)
    except ValueError:
        pass  # Failures are rare; they are told exactly as before, by the path below.
    try:
        return IngestChunk.model_validate_json(message.value)
    except ValidationError as exc:
        not_json = any(e["type"] == "json_invalid" for e in exc.errors())
        if not (not_json and may_hold_surrogates(message.value)):
            raise InvalidMessage(Stage.DECODE if not_json else Stage.VALIDATE, exc) from exc
    return _with_lone_surrogates(message.value)


def _with_lone_surrogates(value: bytes) -> IngestChunk:
    """A chunk whose JSON spells a lone surrogate, which pydantic's parser refuses: the
    record holding it fails alone (as one with a NUL does), not the chunk."""
    try:
        parsed = codec.loads(value)
    except ValueError as exc:
        raise InvalidMessage(Stage.DECODE, exc) from exc
    try:
        chunk = IngestChunk.model_validate(parsed)
    except ValidationError as exc:
        raise InvalidMessage(Stage.VALIDATE, exc) from exc
    problem = holds_unstorable_text(chunk.model_dump(exclude={"records"}))
    if problem:
        raise InvalidMessage(Stage.VALIDATE, ValueError(f"the envelope's fields hold {problem}"))
    return chunk


def derived_batch_id(message: ConsumedMessage) -> str:
    """For producers that leave the batch id to us: ``kafka-<topic>-<partition>-<offset>``.

    Stable across redeliveries, and across replays from the dead-letter topic, which carry
    the position the message was first consumed at.
    """
    origin = _ORIGIN.fullmatch(message.header(ORIGIN_HEADER) or b"")
    if origin is not None:
        topic, partition, offset = (part.decode() for part in origin.groups())
        return f"kafka-{topic}-{partition}-{offset}"
    # No origin, or one a producer made up (any client can set headers): this position.
    return f"kafka-{message.topic}-{message.partition}-{message.offset}"


# topic:partition:offset, as a replay writes it; short enough for a batch id (200).
_ORIGIN = re.compile(rb"([A-Za-z0-9._-]{1,150}):(\d{1,10}):(\d{1,19})")


@dataclass
class ChunkResult:
    batch_id: str
    # Encoded ChunkOutcome messages: this chunk's, and a redelivered chunk's stored ones.
    outcomes: list[bytes]
    events: list[outbox.StagedEvent] = field(default_factory=list)


class Inserter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AsyncProducer,
        writers: Mapping[str, EntityWriter],
        metrics: Metrics,
        retry: RetryPolicy,
        dead_letters: DeadLetterPolicy,
        event_topics: TopicEnsurer,
        max_records_per_batch: int,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._event_topics = event_topics
        self._writers = {name.lower(): writer for name, writer in writers.items()}
        self._metrics = metrics
        self._retry = retry
        self._dead_letters = dead_letters
        self._max_records_per_batch = max_records_per_batch

    async def handle(self, message: ConsumedMessage) -> None:
        """Process one ingest message completely; never raises: what cannot be processed is
        dead-lettered here, and nowhere else."""
        try:
            await self.process(message)
        except InvalidMessage as invalid:
            await self._dead_letters.send(invalid.letter(message))
        except _RetriesExhausted as exhausted:
            letter = exhausted.invalid.letter(message)
            await self._dead_letters.send(letter)
            await self._settle_dead_lettered(exhausted.chunk, exhausted.batch_id, letter)
        except Exception as exc:
            # A failure nobody foresaw must not stop the partition behind this message.
            log.exception("unexpected failure handling %s[%s]@%s", *_position(message))
            await self._dead_letters.send(DeadLetter.for_failure(message, exc, Stage.PROCESS, 1))

    async def process(self, message: ConsumedMessage) -> None:
        """decode -> route -> write -> publish; returning lets the offset be acknowledged."""
        chunk = decode_chunk(message)
        writer = self._route(chunk)
        batch_id = chunk.batch_id or derived_batch_id(message)
        await self._ensure_event_topic(writer, chunk)
        result = await self._write_retrying(message, writer, chunk, batch_id)
        await self._publish(result)

    def _route(self, chunk: IngestChunk) -> EntityWriter:
        writer = self._writers.get(chunk.entity.lower())
        if writer is None:
            raise InvalidMessage(Stage.ROUTE, UnknownEntity(chunk.entity))
        if chunk.operation not in writer.operations:
            raise InvalidMessage(
                Stage.ROUTE,
                ValueError(f"entity {chunk.entity!r} does not take {chunk.operation!r}"),
            )
        return writer

    async def _ensure_event_topic(self, writer: EntityWriter, chunk: IngestChunk) -> None:
        """Per-tenant event topics appear on first use; a cluster may not auto-create them."""
        if not chunk.options.publish_events:
            return
        topic = writer.event_route(chunk).topic
        try:
            await self._retry.until_done(
                lambda: self._event_topics.ensure(topic), "topic creation", TopicCreationError
            )
        except TopicCreationError as exc:
            raise InvalidMessage(Stage.ROUTE, exc) from exc

    async def _write_retrying(
        self, message: ConsumedMessage, writer: EntityWriter, chunk: IngestChunk, batch_id: str
    ) -> ChunkResult:
        """``_write_chunk`` until it succeeds: an outage is waited out without counting an
        attempt (nothing behind the chunk on its partition moves meanwhile); other failures
        are retried with backoff up to the policy's attempts."""
        attempts = 0
        first_failed_at: datetime | None = None
        while True:
            try:
                return await self._retry.until_reachable(
                    lambda: self._write_chunk(
                        writer,
                        chunk,
                        batch_id,
                        may_hold_unstorable=may_hold_unstorable(message.value or b""),
                        digest=hashlib.blake2b(message.value or b"", digest_size=16).digest(),
                    ),
                    is_transient,
                    "transient database error, retrying the chunk",
                )
            except (BatchIndexReused, BatchMismatch, BatchTooLarge) as exc:
                # Nothing was written, and the batch keeps what it already reports.
                raise InvalidMessage(Stage.VALIDATE, exc) from exc
            except Exception as exc:
                attempts += 1
                first_failed_at = first_failed_at or datetime.now(UTC)
                if attempts >= self._retry.max_attempts:
                    log.exception("chunk of batch %s dead-lettered", batch_id)
                    invalid = InvalidMessage(Stage.PROCESS, exc, attempts, first_failed_at)
                    raise _RetriesExhausted(invalid, chunk, batch_id) from exc
                await asyncio.sleep(self._retry.backoff(attempts))

    async def _settle_dead_lettered(
        self, chunk: IngestChunk, batch_id: str, letter: DeadLetter
    ) -> None:
        """A chunk dead-lettered after its retries still gets its records' outcomes."""
        # The failed transaction took a Kafka-produced batch's header with it; without one
        # the failed outcomes would have nothing to land on.
        try:
            await self._retry.until_done(
                lambda: _ensure_header_or_give_up(
                    self._pool, chunk, batch_id, self._max_records_per_batch
                ),
                "writing the batch header",
                _Permanent,
            )
        except _Permanent as exc:
            log.error("batch %s gets no header: %s", batch_id, exc)
        await self._publish(await self._unprocessed(chunk, batch_id, letter))

    async def _write_chunk(
        self,
        writer: EntityWriter,
        chunk: IngestChunk,
        batch_id: str,
        *,
        may_hold_unstorable: bool,
        digest: bytes,
    ) -> ChunkResult:
        indices = chunk.record_indices()
        async with self._pool.acquire() as conn, conn.transaction():
            # First: a second delivery of this chunk (a stalled worker that resumed) waits
            # here until the first transaction ends, then finds its ledger row.
            await ledger.lock_batch_writes(conn, batch_id)
            # REST batches have their header already; chunks produced straight to Kafka
            # get theirs from the first chunk that arrives.
            header = _check_header(
                await batches.ensure_header(conn, chunk, batch_id, self._max_records_per_batch),
                chunk,
                batch_id,
                self._max_records_per_batch,
            )
            # Event ids name this batch, not only its id: a deleted batch's id can be used
            # again, and its events must not share ids with the new one's.
            created = header["created_at"].isoformat()
            found = await ledger.overlapping(conn, batch_id, chunk.attempt, indices)
            done = [c for c in found if c.written]
            reused = sorted(
                index
                for c in done
                if c.attempt == chunk.attempt and c.digest not in (None, digest)
                for index in c.overlap
            )
            if reused:
                raise BatchIndexReused(batch_id, reused)
            done_indices = {index for c in done for index in c.overlap}
            records = [
                PendingRecord(index, raw)
                for index, raw in zip(indices, chunk.records, strict=True)
                if index not in done_indices
            ]
            results: list[RecordResult] = []
            if may_hold_unstorable:
                refused = {r.index: holds_unstorable_text(r.raw) for r in records}
                results = [
                    _unstorable_rejected(index, problem)
                    for index, problem in refused.items()
                    if problem
                ]
                records = [r for r in records if not refused[r.index]]
                if results and chunk.options.atomic:
                    results += [
                        RecordResult.failed(r.index, RecordError.NOT_PROCESSED) for r in records
                    ]
                    records = []
            if records:
                results += await self._write_records(conn, writer, chunk, records)
            outcomes: list[bytes] = []
            if results:
                results.sort(key=lambda r: r.index)
                outcomes = _outcomes(chunk, batch_id, results)
                payloads = {r.index: r.raw for r in records}
                await ledger.record(
                    conn,
                    batch_id,
                    chunk.attempt,
                    [r.index for r in results],
                    outcomes,
                    _failed_payloads(results, payloads),
                    digest,
                )
            events = self._domain_events(writer, chunk, batch_id, created, results)
            await outbox.stage(conn, events)

        self._count(chunk.entity, results)
        if done:
            # A redelivery: what the first run wrote is told again, as it was; events it
            # staged may not have been sent.
            outcomes = [message for c in done for message in c.messages] + outcomes
            events += await outbox.pending(self._pool, _written_event_ids(batch_id, created, done))
        return ChunkResult(batch_id, outcomes, events)

    async def _write_records(
        self,
        conn: asyncpg.Connection,
        writer: EntityWriter,
        chunk: IngestChunk,
        records: Sequence[PendingRecord],
    ) -> list[RecordResult]:
        try:
            written = await _in_savepoint(conn, writer, chunk, records, kept=True)
        except ChunkRejected as rejected:
            return rejected.results
        if not isinstance(written, asyncpg.PostgresError):
            return written
        if chunk.options.atomic:
            return _refused(records, written)
        log.info("chunk failed as a whole (%s); falling back to row by row", written)
        # Each record in a savepoint of its own: a refusal fails that record alone.
        results: list[RecordResult] = []
        for record in records:
            alone = await _in_savepoint(conn, writer, chunk, [record])
            results += _refused([record], alone) if isinstance(alone, Exception) else alone
        return results

    def _domain_events(
        self,
        writer: EntityWriter,
        chunk: IngestChunk,
        batch_id: str,
        batch_created: str,
        results: Sequence[RecordResult],
    ) -> list[outbox.StagedEvent]:
        if not chunk.options.publish_events:
            return []
        route = writer.event_route(chunk)
        now_ms = int(time.time() * 1000)
        staged = []
        for result in results:
            if result.status is RecordStatus.FAILED or result.entity_id is None:
                continue
            event_id = stable_event_id(batch_id, batch_created, result.index, chunk.attempt)
            event = DomainEvent(
                eventId=event_id,
                eventTs=now_ms,
                type=_EVENT_TYPES[result.status],
                entity=writer.entity if route.entity_in_value else None,
                tenant=route.tenant or chunk.options.tenant,
                old=result.old if result.status is not RecordStatus.INSERTED else None,
                new=result.new if result.status is not RecordStatus.DELETED else None,
            )
            message = OutgoingMessage(
                route.topic,
                codec.dumps(event.model_dump(exclude_none=True)),
                result.entity_id.encode(),
                route.headers,
            )
            staged.append(outbox.StagedEvent(event_id, batch_id, message))
        return staged

    async def _unprocessed(
        self, chunk: IngestChunk, batch_id: str, letter: DeadLetter
    ) -> ChunkResult:
        """Every record of a dead-lettered chunk still gets an outcome: failed, and why.

        Their payloads go to the ledger too, so a PUT can retry them once the cause is
        fixed; the ledger row is marked not written, so a replay from the dead-letter topic
        writes them afresh and takes the row over.
        """
        details = RecordDetails(dead_letter=letter.error_class, message=letter.error_message)
        indices = chunk.record_indices()
        results = [
            RecordResult.failed(index, RecordError.PROCESSING_FAILED, details) for index in indices
        ]
        payloads = {
            index: raw
            for index, raw in zip(indices, chunk.records, strict=True)
            if not holds_unstorable_text(raw)
        }
        outcomes = _outcomes(chunk, batch_id, results)
        try:
            async with self._pool.acquire() as conn:
                await ledger.record(
                    conn,
                    batch_id,
                    chunk.attempt,
                    indices,
                    outcomes,
                    _failed_payloads(results, payloads),
                    None,
                    written=False,
                )
        except Exception as exc:  # noqa: BLE001 - the outcomes matter more than retryability
            log.warning("could not keep the payloads of batch %s for retries: %s", batch_id, exc)
        self._count(chunk.entity, results)
        return ChunkResult(batch_id, outcomes)

    def _count(self, entity: str, results: Sequence[RecordResult]) -> None:
        tally = Counter((r.status, r.error.value if r.error else "unknown") for r in results)
        for (status, error), count in tally.items():
            if status is RecordStatus.FAILED:
                self._metrics.records_failed.labels(entity, error).inc(count)
            else:
                self._metrics.records_written.labels(entity, status.value).inc(count)

    async def _publish(self, result: ChunkResult) -> None:
        """Sending after commit must not give up: the offset is acknowledged only afterwards."""
        key = result.batch_id.encode()
        await self._retry.until_done(
            lambda: self._producer.send_values(topics.OUTCOMES, key, result.outcomes),
            "sending outcomes",
        )
        await self._retry.until_done(
            lambda: domain_events.publish(self._pool, self._producer, result.events),
            "sending domain events",
        )


class _RetriesExhausted(Exception):
    """A valid chunk that kept failing: dead-lettered, its records then settled as failed."""

    def __init__(self, invalid: InvalidMessage, chunk: IngestChunk, batch_id: str) -> None:
        super().__init__(str(invalid))
        self.invalid = invalid
        self.chunk = chunk
        self.batch_id = batch_id


def _position(message: ConsumedMessage) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset


class _Permanent(Exception):
    """A database refusal that no retry changes."""


async def _ensure_header_or_give_up(
    pool: asyncpg.Pool, chunk: IngestChunk, batch_id: str, max_records: int
) -> None:
    try:
        await batches.ensure_header(pool, chunk, batch_id, max_records)
    except asyncpg.PostgresError as exc:
        if is_transient(exc):
            raise
        raise _Permanent(str(exc)) from exc


def _check_header(
    stored: asyncpg.Record | None, chunk: IngestChunk, batch_id: str, max_records: int
) -> asyncpg.Record:
    """Chunks of one batch must agree with its header: else an instance chunk could land
    in an activity batch, or a batch could collect more results than it has records."""
    if stored is None:
        # Under the batch's write lock, only a chunk over the limit leaves it without one.
        raise BatchTooLarge(batch_id, chunk.total_records, max_records)
    for name, kept, sent in (
        ("entity", stored["entity"].lower(), chunk.entity.lower()),
        ("operation", stored["operation"], chunk.operation),
        ("record_count", stored["record_count"], chunk.total_records),
    ):
        if kept != sent:
            raise BatchMismatch(batch_id, name, kept, sent)
    # Retries go through the batch (PUT), which moves its attempt first.
    if chunk.attempt > stored["attempt"]:
        raise BatchMismatch(batch_id, "attempt", stored["attempt"], chunk.attempt)
    return stored


def _outcomes(chunk: IngestChunk, batch_id: str, results: Sequence[RecordResult]) -> list[bytes]:
    """The chunk's outcome message (or its parts); ``results`` in index order."""
    return encode_outcomes(
        batch_id,
        chunk.entity.lower(),
        chunk.attempt,
        chunk.total_records,
        [(r.index, r.status, r.entity_id, r.error, r.details) for r in results],
    )


def _failed_payloads(results: Sequence[RecordResult], payloads: Mapping[int, Any]) -> bytes | None:
    """The failed records' payloads as JSON by index, kept for retries; None if none failed."""
    failed = {
        r.index: payloads[r.index]
        for r in results
        if r.status is RecordStatus.FAILED and r.index in payloads
    }
    if not failed:
        return None
    try:
        return codec.dumps(failed, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # orjson refuses integers beyond 64 bits, which a failed record may hold; the
        # standard encoder keeps them exactly.
        return json.dumps({str(i): p for i, p in failed.items()}, ensure_ascii=False).encode()


def _written_event_ids(
    batch_id: str, created: str, done: Iterable[ledger.LedgerChunk]
) -> list[str]:
    """Event ids of the records these ledger rows stored (a record that failed has none)."""
    return [
        stable_event_id(batch_id, created, o["index"], chunk.attempt)
        for chunk in done
        for message in chunk.messages
        for o in codec.loads(message)["outcomes"]
        if o["status"] != RecordStatus.FAILED and o["index"] in chunk.overlap
    ]


def _unstorable_rejected(index: int, problem: str) -> RecordResult:
    """A record with text PostgreSQL cannot store (NUL, a lone surrogate) fails alone, not
    the chunk it came in."""
    return RecordResult.failed(
        index,
        RecordError.VALIDATION_ERROR,
        [
            FieldError(
                field=None,
                message=f"Text must not contain {problem}",
                type="nul_character" if problem == NUL_NAME else "lone_surrogate",
            )
        ],
    )


async def _in_savepoint(
    conn: asyncpg.Connection,
    writer: EntityWriter,
    chunk: IngestChunk,
    records: Sequence[PendingRecord],
    *,
    kept: bool = False,
) -> list[RecordResult] | asyncpg.PostgresError:
    """``records`` written in a savepoint: their results, or the database's refusal (which
    rolled back the savepoint only). An outage is raised. ``kept``: the savepoint is not
    released (one round trip less), for the one whole-chunk write of a transaction; the
    row-by-row fallback releases each of its thousand."""
    try:
        async with db.kept_savepoint(conn, "batchline_chunk_write") if kept else conn.transaction():
            return await writer.write(conn, chunk, records)
    except asyncpg.PostgresError as exc:
        if is_transient(exc):
            raise
        return exc


def _refused(records: Sequence[PendingRecord], exc: asyncpg.PostgresError) -> list[RecordResult]:
    return [
        RecordResult.failed(r.index, RecordError.DATABASE_ERROR, _db_error(exc)) for r in records
    ]


def _db_error(exc: asyncpg.PostgresError) -> RecordDetails:
    return RecordDetails(sqlstate=getattr(exc, "sqlstate", None), message=str(exc))
