"""The inserter: one ingest chunk -> entity rows + ledger in ONE transaction -> outcome events.

Per message: decode (or dead-letter), write with bounded retries for permanent errors and
unbounded, paused retries for transient ones (the database restarting), then publish the
outcomes and domain events and only then return, so Faust acknowledges the offset after
the sink is flushed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import asyncpg
import pydantic_core
from pydantic import ValidationError

from batchline import dlq
from batchline.db import is_transient, outage_backoff
from batchline.metrics import Metrics
from consumers import ledger, outbox
from consumers.writers.base import ChunkRejected, EntityWriter, PendingRecord, RecordResult
from streams import codec, topics
from streams.admin import TopicCreationError, TopicEnsurer
from streams.deadletter import ORIGIN_HEADER, DeadLetter, Stage
from streams.envelopes import IngestChunk
from streams.events import (
    DomainEvent,
    RecordError,
    RecordStatus,
    encode_outcome,
    stable_event_id,
)
from streams.messages import ConsumedMessage
from streams.producer import AsyncProducer, DeliveryError, OutgoingMessage

log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 30.0
_EVENT_TYPES: dict[RecordStatus, Literal["CREATE", "UPDATE", "DELETE"]] = {
    RecordStatus.INSERTED: "CREATE",
    RecordStatus.UPDATED: "UPDATE",
    RecordStatus.DELETED: "DELETE",
}
T = TypeVar("T")


class UndeliverableMessage(Exception):
    """A message that no retry can fix; it goes to the dead-letter topic."""

    def __init__(self, stage: Stage, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.stage = stage
        self.cause = cause


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


class UnknownEntity(Exception):
    def __init__(self, entity: str) -> None:
        super().__init__(f"no writer for entity {entity!r}")


def decode_chunk(message: ConsumedMessage) -> IngestChunk:
    if message.value is None:
        raise UndeliverableMessage(Stage.DECODE, ValueError("message has no value"))
    try:
        # pydantic's own JSON parser, then validation of the Python objects it built:
        # ~0.4 ms for 1000 records where model_validate_json takes ~0.65, which builds
        # every record's values a second time on the way to list[Any]. The same parser
        # accepts the same documents (nesting limit included).
        parsed = pydantic_core.from_json(message.value, cache_strings="keys")
        return IngestChunk.model_validate(parsed)
    except ValueError:
        pass  # Failures are rare; they are told exactly as before, by the path below.
    try:
        return IngestChunk.model_validate_json(message.value)
    except ValidationError as exc:
        not_json = any(e["type"] == "json_invalid" for e in exc.errors())
        if not (not_json and codec.may_hold_surrogates(message.value)):
            raise UndeliverableMessage(Stage.DECODE if not_json else Stage.VALIDATE, exc) from exc
    return _with_lone_surrogates(message.value)


def _with_lone_surrogates(value: bytes) -> IngestChunk:
    """A chunk whose JSON spells a lone surrogate, which pydantic's parser refuses: the
    record holding it fails alone (as one with a NUL does), not the chunk."""
    try:
        parsed = codec.loads(value)
    except ValueError as exc:
        raise UndeliverableMessage(Stage.DECODE, exc) from exc
    try:
        chunk = IngestChunk.model_validate(parsed)
    except ValidationError as exc:
        raise UndeliverableMessage(Stage.VALIDATE, exc) from exc
    problem = codec.holds_unstorable_text(chunk.model_dump(exclude={"records"}))
    if problem:
        raise UndeliverableMessage(
            Stage.VALIDATE, ValueError(f"the envelope's fields hold {problem}")
        )
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
    # Encoded RecordOutcome values, in record-index order.
    outcomes: list[bytes]
    events: list[outbox.StagedEvent] = field(default_factory=list)


# The batch's header as stored, whether this chunk wrote it or an earlier one (or a front
# door) did: the statement's snapshot does not see its own insert, so one side is empty.
_ENSURE_HEADER = """
WITH inserted AS (
    INSERT INTO batch
        (id, entity, source, record_count, pending_count, attempt, options, operation)
    VALUES ($1, $2, 'kafka', $3, $3, $4, $5, $6)
    ON CONFLICT (id) DO NOTHING
    RETURNING entity, record_count, operation, attempt, created_at
)
SELECT entity, record_count, operation, attempt, created_at FROM inserted
UNION ALL
SELECT entity, record_count, operation, attempt, created_at FROM batch WHERE id = $1
LIMIT 1
"""


class Inserter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AsyncProducer,
        writers: Mapping[str, EntityWriter],
        metrics: Metrics,
        max_attempts: int,
        backoff_seconds: float,
        event_topics: TopicEnsurer,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._event_topics = event_topics
        self._writers = {name.lower(): writer for name, writer in writers.items()}
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds

    async def handle(self, message: ConsumedMessage) -> None:
        """Process one ingest message completely; never raises."""
        try:
            await self._handle(message)
        except Exception as exc:
            # A failure nobody foresaw must not stop the partition behind this message.
            log.exception("unexpected failure handling %s[%s]@%s", *_position(message))
            await self._dead_letter(DeadLetter.for_failure(message, exc, Stage.PROCESS, 1))

    async def _handle(self, message: ConsumedMessage) -> None:
        try:
            chunk = decode_chunk(message)
            writer = self._writers.get(chunk.entity.lower())
            if writer is None:
                raise UndeliverableMessage(Stage.ROUTE, UnknownEntity(chunk.entity))
            if chunk.operation not in writer.operations:
                raise UndeliverableMessage(
                    Stage.ROUTE,
                    ValueError(f"entity {chunk.entity!r} does not take {chunk.operation!r}"),
                )
        except UndeliverableMessage as exc:
            await self._dead_letter(DeadLetter.for_failure(message, exc.cause, exc.stage, 1))
            return

        batch_id = chunk.batch_id or derived_batch_id(message)
        if chunk.options.publish_events:
            # Per-tenant event topics appear on first use; a cluster may not auto-create them.
            topic = writer.event_route(chunk).topic
            try:
                await self._until_done(
                    lambda: self._event_topics.ensure(topic), "topic creation", TopicCreationError
                )
            except TopicCreationError as exc:
                await self._dead_letter(DeadLetter.for_failure(message, exc, Stage.ROUTE, 1))
                return
        attempts = 0
        outage_waits = 0
        first_failed_at: datetime | None = None
        while True:
            try:
                result = await self._write_chunk(
                    writer,
                    chunk,
                    batch_id,
                    may_hold_unstorable=_may_hold_unstorable(message.value or b""),
                    digest=hashlib.blake2b(message.value or b"", digest_size=16).digest(),
                )
                break
            except (BatchIndexReused, BatchMismatch) as exc:
                # Nothing was written, and the batch keeps what it already reports.
                await self._dead_letter(DeadLetter.for_failure(message, exc, Stage.VALIDATE, 1))
                return
            except Exception as exc:
                if is_transient(exc):
                    # Not the message's fault: wait without counting an attempt, however
                    # long it takes. Nothing behind it on the partition moves meanwhile.
                    outage_waits += 1
                    log.warning("transient database error, retrying the chunk: %s", exc)
                    await asyncio.sleep(outage_backoff(self._backoff, outage_waits))
                    continue
                attempts += 1
                first_failed_at = first_failed_at or datetime.now(UTC)
                if attempts >= self._max_attempts:
                    log.exception("chunk of batch %s dead-lettered", batch_id)
                    letter = DeadLetter.for_failure(
                        message, exc, Stage.PROCESS, attempts, first_failed_at
                    )
                    await self._dead_letter(letter)
                    # The failed transaction took a Kafka-produced batch's header with it;
                    # without one the failed outcomes would have nothing to land on.
                    try:
                        await self._until_done(
                            lambda: _ensure_header_or_give_up(self._pool, chunk, batch_id),
                            "batch header",
                            _Permanent,
                        )
                    except _Permanent as exc:
                        log.error("batch %s gets no header: %s", batch_id, exc)
                    result = await self._unprocessed(chunk, batch_id, letter)
                    break
                await asyncio.sleep(self._backoff_for(attempts))
        await self._publish(result)

    def _backoff_for(self, attempt: int) -> float:
        return float(min(self._backoff * 2 ** (attempt - 1), _MAX_BACKOFF_SECONDS))

    async def _write_chunk(
        self,
        writer: EntityWriter,
        chunk: IngestChunk,
        batch_id: str,
        *,
        may_hold_unstorable: bool,
        digest: bytes,
    ) -> ChunkResult:
        records = [
            PendingRecord(index, raw)
            for index, raw in zip(chunk.record_indices(), chunk.records, strict=True)
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            # REST batches have their header already; chunks produced straight to Kafka
            # get theirs from the first chunk that arrives.
            header = await _ensure_header(conn, chunk, batch_id)
            _check_header(header, chunk, batch_id)
            # Event ids name this batch, not only its id: a deleted batch's id can be used
            # again, and its events must not share ids with the new one's.
            created = header["created_at"].isoformat() if header else ""
            done = await ledger.fetch_done(
                conn, batch_id, [r.index for r in records], chunk.attempt
            )
            reused = sorted(
                index
                for index, record in done.items()
                if record.attempt == chunk.attempt and record.chunk_digest not in (None, digest)
            )
            if reused:
                raise BatchIndexReused(batch_id, reused)
            todo = [r for r in records if r.index not in done]
            results: list[RecordResult] = []
            if may_hold_unstorable:
                refused = {r.index: codec.holds_unstorable_text(r.raw) for r in todo}
                results = [
                    _unstorable_rejected(index, problem)
                    for index, problem in refused.items()
                    if problem
                ]
                todo = [r for r in todo if not refused[r.index]]
                if results and chunk.options.atomic:
                    results += [
                        RecordResult.failed(r.index, RecordError.NOT_PROCESSED) for r in todo
                    ]
                    todo = []
            if todo:
                results += await self._write_records(conn, writer, chunk, todo)
            if results:
                await ledger.record(
                    conn,
                    batch_id,
                    chunk.attempt,
                    results,
                    {r.index: r.raw for r in todo},
                    digest,
                )
            events = self._domain_events(writer, chunk, batch_id, created, results)
            await outbox.stage(conn, events)

        self._count(chunk.entity, results)
        ordered = sorted(
            [
                *((d.attempt, d.result) for d in done.values()),
                *((chunk.attempt, r) for r in results),
            ],
            key=lambda pair: pair[1].index,
        )
        outcomes = _outcomes(chunk, batch_id, ordered)
        if done:
            # A redelivery: events staged by the first run may not have been sent.
            replay_ids = [
                stable_event_id(batch_id, created, index, attempt)
                for index, (attempt, r, _) in done.items()
                if r.status is not RecordStatus.FAILED
            ]
            events += await outbox.pending(self._pool, replay_ids)
        return ChunkResult(batch_id, outcomes, events)

    async def _write_records(
        self,
        conn: asyncpg.Connection,
        writer: EntityWriter,
        chunk: IngestChunk,
        records: Sequence[PendingRecord],
    ) -> list[RecordResult]:
        try:
            async with conn.transaction():
                return await writer.write(conn, chunk, records)
        except ChunkRejected as rejected:
            return rejected.results
        except asyncpg.PostgresError as exc:
            if is_transient(exc):
                raise
            if chunk.options.atomic:
                return [
                    RecordResult.failed(r.index, RecordError.DATABASE_ERROR, _db_error(exc))
                    for r in records
                ]
            log.info("chunk failed as a whole (%s); falling back to row by row", exc)
        return await self._write_row_by_row(conn, writer, chunk, records)

    async def _write_row_by_row(
        self,
        conn: asyncpg.Connection,
        writer: EntityWriter,
        chunk: IngestChunk,
        records: Sequence[PendingRecord],
    ) -> list[RecordResult]:
        results: list[RecordResult] = []
        for record in records:
            try:
                async with conn.transaction():
                    results += await writer.write(conn, chunk, [record])
            except asyncpg.PostgresError as exc:
                if is_transient(exc):
                    raise
                results.append(
                    RecordResult.failed(record.index, RecordError.DATABASE_ERROR, _db_error(exc))
                )
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
        fixed; the ledger does not count them as done, so a replay from the dead-letter
        topic writes them afresh.
        """
        details = {"dead_letter": letter.error_class, "message": letter.error_message}
        indices = chunk.record_indices()
        results = [
            RecordResult.failed(index, RecordError.PROCESSING_FAILED, details) for index in indices
        ]
        payloads = {
            index: raw
            for index, raw in zip(indices, chunk.records, strict=True)
            if not codec.holds_unstorable_text(raw)
        }
        try:
            async with self._pool.acquire() as conn:
                await ledger.record(conn, batch_id, chunk.attempt, results, payloads, None)
        except Exception as exc:  # noqa: BLE001 - the outcomes matter more than retryability
            log.warning("could not keep the payloads of batch %s for retries: %s", batch_id, exc)
        self._count(chunk.entity, results)
        return ChunkResult(
            batch_id, _outcomes(chunk, batch_id, [(chunk.attempt, r) for r in results])
        )

    def _count(self, entity: str, results: Sequence[RecordResult]) -> None:
        tally = Counter((r.status, r.error.value if r.error else "unknown") for r in results)
        for (status, error), count in tally.items():
            if status is RecordStatus.FAILED:
                self._metrics.records_failed.labels(entity, error).inc(count)
            else:
                self._metrics.records_written.labels(entity, status.value).inc(count)

    async def _publish(self, result: ChunkResult) -> None:
        key = result.batch_id.encode()
        await self._until_done(
            lambda: self._producer.send_values(topics.OUTCOMES, key, result.outcomes), "outcomes"
        )
        await self._until_done(
            lambda: outbox.publish(self._pool, self._producer, result.events), "domain events"
        )

    async def _dead_letter(self, letter: DeadLetter) -> None:
        letter = await self._until_done(
            lambda: dlq.with_trusted_replay_count(self._pool, letter), "replay count"
        )
        self._metrics.dead_letters.labels(letter.stage.value).inc()
        log.warning(
            "dead-lettering %s[%s]@%s at stage %s: %s",
            letter.source_topic,
            letter.source_partition,
            letter.source_offset,
            letter.stage.value,
            letter.error_message[:200],
        )

        async def send() -> None:
            try:
                await self._producer.send_many([letter.to_message()])
            except DeliveryError as exc:
                if exc.too_large:
                    raise _TooLarge(str(exc)) from exc
                raise

        try:
            await self._until_done(send, "dlq", _TooLarge)
        except _TooLarge:
            # Retrying would wedge the partition forever; the original stays on its topic.
            log.error("dead letter too large for %s; sent without its value", topics.DLQ)
            await self._until_done(
                lambda: self._producer.send_many([letter.to_message_without_value()]), "dlq"
            )

    async def _until_done(
        self,
        action: Callable[[], Awaitable[T]],
        what: str,
        final: type[Exception] | tuple[type[Exception], ...] = (),
    ) -> T:
        """Sending after commit must not give up: the offset is acknowledged only afterwards.

        ``final`` names failures no retry can fix; those are raised to the caller.
        """
        attempt = 0
        while True:
            try:
                return await action()
            except final:
                raise
            except Exception as exc:  # noqa: BLE001 - broker or database away: wait, retry
                attempt += 1
                log.warning("sending %s failed (attempt %d): %s", what, attempt, exc)
                await asyncio.sleep(self._backoff_for(attempt))


class _TooLarge(Exception):
    """A message the producer or the topic will never take, however often it is sent."""


def _position(message: ConsumedMessage) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset


class _Permanent(Exception):
    """A database refusal that no retry changes."""


async def _ensure_header_or_give_up(pool: asyncpg.Pool, chunk: IngestChunk, batch_id: str) -> None:
    try:
        await _ensure_header(pool, chunk, batch_id)
    except asyncpg.PostgresError as exc:
        if is_transient(exc):
            raise
        raise _Permanent(str(exc)) from exc


async def _ensure_header(
    conn: asyncpg.Connection | asyncpg.Pool, chunk: IngestChunk, batch_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        _ENSURE_HEADER,
        batch_id,
        chunk.entity.lower(),
        chunk.total_records,
        chunk.attempt,
        chunk.options.model_dump(),
        chunk.operation,
    )


def _check_header(stored: asyncpg.Record | None, chunk: IngestChunk, batch_id: str) -> None:
    """Chunks of one batch must agree with its header: else an instance chunk could land
    in an activity batch, or a batch could collect more results than it has records."""
    if stored is None:  # written by a transaction this statement could not see yet
        return
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


def _outcomes(
    chunk: IngestChunk, batch_id: str, results: Iterable[tuple[int, RecordResult]]
) -> list[bytes]:
    """Encoded outcomes of ``(attempt, result)`` pairs, one per record."""
    entity = chunk.entity.lower()
    total = chunk.total_records
    return [
        encode_outcome(
            batch_id, r.index, attempt, r.status, entity, r.entity_id, r.error, r.details, total
        )
        for attempt, r in results
    ]


# How JSON spells a NUL character; PostgreSQL stores it in neither text nor jsonb.
_NUL_ESCAPE = b"\\u0000"


def _may_hold_unstorable(value: bytes) -> bool:
    """Whether a chunk may hold text PostgreSQL cannot store: NUL, or a lone surrogate."""
    return _NUL_ESCAPE in value or codec.may_hold_surrogates(value)


def _unstorable_rejected(index: int, problem: str) -> RecordResult:
    """A record with text PostgreSQL cannot store fails alone, not the chunk it came in."""
    nul = problem.startswith("NUL")
    return RecordResult.failed(
        index,
        RecordError.VALIDATION_ERROR,
        [
            {
                "field": None,
                "message": f"Text must not contain {problem}",
                "type": "nul_character" if nul else "lone_surrogate",
            }
        ],
    )


def _db_error(exc: asyncpg.PostgresError) -> dict[str, Any]:
    return {"sqlstate": getattr(exc, "sqlstate", None), "message": str(exc)}
