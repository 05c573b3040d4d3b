"""Operators and the dead-letter topic: list, show and replay dead letters.

Reading ``batchline.dlq`` needs no consumer group (``streams.reader``). A ``RunBook``
(PostgreSQL's, ``sql.replay_runs``) records every replay run (filters, progress, counts, a
cancel flag; from the CLI or the operator API alike) and which dead letters a run put back,
so a second run does not put them back again. A replayed message carries its replay count;
one that failed again after ``BATCHLINE_DLQ_MAX_REPLAYS`` replays is *parked*: it stays
listed and is never replayed again.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from batchline.settings import Settings
from batchline.text import NO_NUL_PATTERN, NUL_NAME, holds_nul
from streams import codec, topics
from streams.deadletter import DeadLetter, Stage
from streams.messages import ConsumedMessage
from streams.producer import AsyncProducer
from streams.reader import read_topic

log = logging.getLogger(__name__)

# A running replay refreshes its row at least this often; one silent for much longer
# stopped without finishing (its process died: ``sql.replay_runs`` reports it interrupted).
_HEARTBEAT_SECONDS = 0.5
_FLUSH_SECONDS = 0.2
_UNPACED_GROUP = 500


class LetterStatus(StrEnum):
    PENDING = "pending"  # can be replayed
    REPLAYED = "replayed"  # put back by a replay run
    PARKED = "parked"  # failed again after the replay limit: never replayed again


# --- Filters ------------------------------------------------------------------------------

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*s)?$")


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise) or an age: ``30m``, ``2h``, ``7d``."""
    age = _AGE.match(text.strip())
    if age:
        amount, unit = float(age.group(1)), _AGE_UNITS[age.group(2)]
        try:
            return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
        except OverflowError:
            raise ValueError(f"not a time: {text!r} reaches before year 1") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use ISO 8601 or an age like 2h)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_rate(text: str) -> float:
    """Messages per second: ``50``, ``50/s``, ``2.5/s``."""
    match = _RATE.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a rate: {text!r} (use a positive number, e.g. 50/s)")
    return float(match.group(1))


_NO_NUL: dict[str, JsonValue] = {"pattern": NO_NUL_PATTERN}


class DeadLetterFilter(BaseModel):
    """Which dead letters to list or replay; every given field must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: datetime | None = Field(
        default=None, description="Dead-lettered at or after: ISO 8601, or an age (30m, 2h, 7d)."
    )
    until: datetime | None = Field(
        default=None, description="Dead-lettered before: ISO 8601, or an age (30m, 2h, 7d)."
    )
    error_class: str | None = Field(
        default=None, description="e.g. ValidationError.", json_schema_extra=_NO_NUL
    )
    entity: str | None = Field(
        default=None, description="The envelope's entity.", json_schema_extra=_NO_NUL
    )
    stage: Stage | None = None
    key: str | None = Field(
        default=None, description="Kafka key (the batch id of chunks).", json_schema_extra=_NO_NUL
    )
    status: LetterStatus | None = None

    @field_validator("error_class", "entity", "key")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # Filters are kept with their replay run, and PostgreSQL stores no NUL in jsonb.
        if value is not None and holds_nul(value):
            raise ValueError(f"must not contain {NUL_NAME}")
        return value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _time_or_age(cls, value: Any) -> Any:
        # The same times as the CLI and the query string take: ISO 8601 or an age (2h).
        return parse_moment(value) if isinstance(value, str) else value

    @field_validator("since", "until")
    @classmethod
    def _utc_unless_stated(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def matches(self, entry: Entry) -> bool:
        letter = entry.letter
        moment = letter.dead_lettered_at or letter.first_failed_at
        return (
            (self.since is None or moment >= self.since)
            and (self.until is None or moment < self.until)
            and (self.error_class is None or letter.error_class.lower() == self.error_class.lower())
            and (self.entity is None or (entry.entity or "").lower() == self.entity.lower())
            and (self.stage is None or letter.stage is self.stage)
            and (self.key is None or entry.key == self.key)
            and (self.status is None or entry.status is self.status)
        )

    def described(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# --- Reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """A dead letter as operators see it."""

    letter: DeadLetter
    status: LetterStatus
    entity: str | None
    batch_id: str | None
    replay_id: str | None = None

    @property
    def id(self) -> str:
        return self.letter.id

    @property
    def key(self) -> str | None:
        """The key as UTF-8 text, or base64 when it is not (``key_format`` says which)."""
        return bytes_view(self.letter.key)[1]


@dataclass(frozen=True, slots=True)
class ReplayMark:
    timestamp_ms: int | None
    replay_id: str


class ReplayMarks:
    """Which dead letters replay runs have put back."""

    def __init__(self, marks: Mapping[tuple[int, int], ReplayMark]) -> None:
        self._marks = marks

    def replay_of(self, message: ConsumedMessage) -> str | None:
        mark = self._marks.get((message.partition, message.offset))
        if mark is None:
            return None
        same_message = (
            mark.timestamp_ms is None
            or message.timestamp_ms is None
            or mark.timestamp_ms == message.timestamp_ms
        )
        return mark.replay_id if same_message else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def entry_of(message: ConsumedMessage, marks: ReplayMarks, max_replays: int) -> Entry:
    letter = DeadLetter.from_message(message)
    replay_id = marks.replay_of(message)
    if replay_id is not None:
        status = LetterStatus.REPLAYED
    elif letter.replay_count >= max_replays:
        status = LetterStatus.PARKED
    else:
        status = LetterStatus.PENDING
    return Entry(
        letter=letter,
        status=status,
        entity=_text(letter.envelope_field("entity")),
        batch_id=_text(letter.envelope_field("batch_id")),
        replay_id=replay_id,
    )


def _reader_config(settings: Settings) -> dict[str, Any]:
    return settings.librdkafka_consumer_config(f"{settings.consumer_group}-dlq-reader")


async def entries(
    settings: Settings,
    runs: RunBook,
    filters: DeadLetterFilter,
    start_offsets: Mapping[int, int] | None = None,
) -> AsyncGenerator[Entry, None]:
    """Dead letters matching ``filters``, oldest first per partition."""
    marks = await runs.marks(topics.DLQ)
    messages = read_topic(_reader_config(settings), topics.DLQ, start_offsets)
    async with contextlib.aclosing(messages):
        async for message in messages:
            entry = entry_of(message, marks, settings.dlq_max_replays)
            if filters.matches(entry):
                yield entry


async def list_entries(
    settings: Settings, runs: RunBook, filters: DeadLetterFilter, limit: int
) -> list[Entry]:
    """The newest ``limit`` matching dead letters, newest first, without their values."""
    newest: collections.deque[Entry] = collections.deque(maxlen=limit)
    found = entries(settings, runs, filters)
    async with contextlib.aclosing(found):
        async for entry in found:
            newest.append(entry)
    return sorted(
        newest,
        key=lambda e: (
            e.letter.dead_lettered_at or e.letter.first_failed_at,
            e.letter.dlq_partition or 0,
            e.letter.dlq_offset or 0,
        ),
        reverse=True,
    )


def parse_id(text: str) -> tuple[int, int]:
    """``<partition>:<offset>`` on the dead-letter topic."""
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ValueError(f"not a dead-letter id: {text!r} (expected <partition>:<offset>)")
    return int(partition), int(offset)


async def find(settings: Settings, runs: RunBook, letter_id: str) -> Entry | None:
    partition, offset = parse_id(letter_id)
    found = entries(settings, runs, DeadLetterFilter(), {partition: offset})
    async with contextlib.aclosing(found):
        async for entry in found:
            if entry.letter.dlq_offset == offset:
                return entry
            if (entry.letter.dlq_offset or 0) > offset:
                return None
    return None


# --- Replay runs --------------------------------------------------------------------------


@dataclass(slots=True)
class ReplayCounts:
    scanned: int = 0  # dead letters read
    matched: int = 0  # passing the filters
    selected: int = 0  # to be replayed (pending)
    replayed: int = 0  # put back on their source topic
    parked: int = 0  # at the replay limit
    already_replayed: int = 0  # put back by an earlier run


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class ReplayRun:
    id: str
    requested_by: str
    filters: dict[str, Any]
    dry_run: bool
    rate_per_second: float | None
    status: RunStatus
    cancel_requested: bool
    counts: ReplayCounts
    error: str | None
    created_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None


class RunBook(Protocol):
    """Where replay runs are recorded (``sql.replay_runs.ReplayRuns``): progress, the dead
    letters they put back, how they ended, and the lock that lets one run at a time."""

    async def marks(self, topic: str) -> ReplayMarks: ...

    async def heartbeat(self, run_id: str, counts: ReplayCounts) -> bool:
        """Record progress; True when an operator asked the run to stop."""
        ...

    async def mark_replayed(
        self, run_id: str, topic: str, messages: Sequence[ConsumedMessage]
    ) -> None: ...

    async def issue_tokens(self, tokens: Sequence[str], replay_counts: Sequence[int]) -> None:
        """Keep each replay token with the replay count of the message that carries it."""
        ...

    async def finish(
        self, run_id: str, status: RunStatus, counts: ReplayCounts, error: str | None = None
    ) -> None: ...

    def alone(self, *, needed: bool) -> contextlib.AbstractAsyncContextManager[bool]:
        """Whether this run is the only one putting dead letters back (dry runs need not be).

        Two runs selecting at once would both find the same letters pending and both put
        them back.
        """
        ...


# --- Replaying ----------------------------------------------------------------------------


class _Cancelled(Exception):
    """An operator cancelled the run."""


class Phase(StrEnum):
    SCANNING = "scanning"  # reading the dead-letter topic, choosing what to replay
    REPLAYING = "replaying"  # putting the chosen messages back


ProgressCallback = Callable[[Phase, ReplayCounts], None]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    run_id: str
    status: RunStatus
    dry_run: bool
    counts: ReplayCounts
    error: str | None = None

    def summary(self) -> str:
        c = self.counts
        verb = "would be replayed" if self.dry_run else "replayed"
        done = c.selected if self.dry_run else c.replayed
        return (
            f"{self.run_id} {self.status.value}{' (dry run)' if self.dry_run else ''}: "
            f"{done} {verb}, {c.parked} parked (replay limit reached), "
            f"{c.already_replayed} already replayed; "
            f"{c.matched} matched the filters of {c.scanned} dead letters"
            + (f"; error: {self.error}" if self.error else "")
        )


@dataclass
class _Replayer:
    settings: Settings
    runs: RunBook
    producer: AsyncProducer
    run: ReplayRun
    filters: DeadLetterFilter
    on_progress: ProgressCallback | None
    counts: ReplayCounts = field(default_factory=ReplayCounts)
    phase: Phase = Phase.SCANNING
    _beat_at: float = 0.0

    async def checkpoint(self, force: bool = False) -> None:
        """Record progress now and then; stop when an operator asked to cancel."""
        now = asyncio.get_running_loop().time()
        if not force and now - self._beat_at < _HEARTBEAT_SECONDS:
            return
        self._beat_at = now
        cancel = await self.runs.heartbeat(self.run.id, self.counts)
        if self.on_progress is not None:
            self.on_progress(self.phase, self.counts)
        if cancel:
            raise _Cancelled

    async def select(self) -> dict[tuple[int, int], int | None]:
        """First pass: the pending dead letters to replay, with their timestamps."""
        selected: dict[tuple[int, int], int | None] = {}
        marks = await self.runs.marks(topics.DLQ)
        messages = read_topic(_reader_config(self.settings), topics.DLQ)
        async with contextlib.aclosing(messages):
            async for message in messages:
                self.counts.scanned += 1
                entry = entry_of(message, marks, self.settings.dlq_max_replays)
                if self.filters.matches(entry):
                    self.counts.matched += 1
                    if entry.status is LetterStatus.REPLAYED:
                        self.counts.already_replayed += 1
                    elif entry.status is LetterStatus.PARKED:
                        self.counts.parked += 1
                    else:
                        self.counts.selected += 1
                        selected[(message.partition, message.offset)] = message.timestamp_ms
                await self.checkpoint()
        await self.checkpoint(force=True)
        return selected

    async def put_back(self, selected: dict[tuple[int, int], int | None]) -> None:
        """Second pass: produce each selected dead letter to its source topic, paced."""
        self.phase = Phase.REPLAYING
        rate = self.run.rate_per_second
        group = max(1, int(rate * _FLUSH_SECONDS)) if rate else _UNPACED_GROUP
        loop = asyncio.get_running_loop()
        next_send = loop.time()
        pending: list[ConsumedMessage] = []
        first_pending_at = 0.0
        starts: dict[int, int] = {}
        for partition, offset in selected:
            starts[partition] = min(offset, starts.get(partition, offset))
        remaining = set(selected)
        messages = read_topic(_reader_config(self.settings), topics.DLQ, starts)
        async with contextlib.aclosing(messages):
            async for message in messages:
                position = (message.partition, message.offset)
                if position not in remaining:
                    continue
                remaining.discard(position)
                if rate:
                    while (wait := next_send - loop.time()) > 0:
                        await asyncio.sleep(min(wait, _HEARTBEAT_SECONDS))
                        await self.checkpoint()
                    next_send = max(next_send, loop.time()) + 1 / rate
                if not pending:
                    first_pending_at = loop.time()
                pending.append(message)
                if len(pending) >= group or loop.time() - first_pending_at >= _FLUSH_SECONDS:
                    await self.flush(pending)
                    pending = []
                if not remaining:
                    break
        await self.flush(pending)

    async def flush(self, messages: list[ConsumedMessage]) -> None:
        """Send, then mark: a crash in between replays those again, which is harmless."""
        if not messages:
            return
        letters = [DeadLetter.from_message(m) for m in messages]
        # Tokens first: a message that fails again before its mark below is written still
        # proves its replay count. A crash before the send leaves tokens nobody holds.
        tokens = [str(uuid.uuid4()) for _ in letters]
        await self.runs.issue_tokens(tokens, [letter.replay_count + 1 for letter in letters])
        await self.producer.send_many(
            letter.replay_message(token) for letter, token in zip(letters, tokens, strict=True)
        )
        await self.runs.mark_replayed(self.run.id, topics.DLQ, messages)
        self.counts.replayed += len(messages)
        await self.checkpoint(force=True)


async def replay(
    settings: Settings,
    runs: RunBook,
    producer: AsyncProducer,
    run: ReplayRun,
    on_progress: ProgressCallback | None = None,
) -> ReplayResult:
    """Carry out the replay ``run`` (from ``RunBook.create``) and record how it ended."""
    filters = DeadLetterFilter.model_validate(run.filters)
    replayer = _Replayer(settings, runs, producer, run, filters, on_progress)
    status, error = RunStatus.COMPLETED, None
    try:
        async with runs.alone(needed=not run.dry_run) as alone:
            if alone:
                selected = await replayer.select()
                if not run.dry_run:
                    await replayer.put_back(selected)
            else:
                status, error = RunStatus.FAILED, _ANOTHER_RUN
    except _Cancelled:
        status = RunStatus.CANCELLED
    except asyncio.CancelledError:
        await runs.finish(run.id, RunStatus.INTERRUPTED, replayer.counts, "stopped")
        raise
    except Exception as exc:
        log.exception("replay %s failed", run.id)
        status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
    await runs.finish(run.id, status, replayer.counts, error)
    return ReplayResult(run.id, status, run.dry_run, replayer.counts, error)


_ANOTHER_RUN = "another replay run is putting dead letters back; start this one when it is done"


# --- Views (CLI --json and the operator API) ----------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def bytes_view(value: bytes | None) -> tuple[str, str | None]:
    """Bytes as UTF-8 text, else base64, and which it is (``none`` for null)."""
    if value is None:
        return "none", None
    try:
        return "text", value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(value).decode()


def header_view(name: str, value: bytes | None) -> dict[str, Any]:
    """One header: a name may come more than once, and a value may be null or binary."""
    value_format, shown = bytes_view(value)
    return {"name": name, "value": shown, "value_format": value_format}


def value_view(value: bytes | None) -> dict[str, Any]:
    """The value as JSON when it is JSON, else as text, else base64."""
    if value is not None:
        with contextlib.suppress(ValueError):
            return {"value_format": "json", "value": codec.loads(value)}
    value_format, shown = bytes_view(value)
    return {"value_format": value_format, "value": shown}


def entry_view(entry: Entry, *, with_value: bool = False) -> dict[str, Any]:
    letter = entry.letter
    view: dict[str, Any] = {
        "id": entry.id,
        "status": entry.status.value,
        "dead_lettered_at": _iso(letter.dead_lettered_at),
        "stage": letter.stage.value,
        "error_class": letter.error_class,
        "error_message": letter.error_message,
        "source": {
            "topic": letter.source_topic,
            "partition": letter.source_partition,
            "offset": letter.source_offset,
        },
        "origin": letter.origin,
        "attempts": letter.attempts,
        "first_failed_at": _iso(letter.first_failed_at),
        "replay_count": letter.replay_count,
        "replay_id": entry.replay_id,
        "entity": entry.entity,
        "batch_id": entry.batch_id,
        "key": entry.key,
        "key_format": bytes_view(letter.key)[0],
        "size": len(letter.value or b""),
    }
    if with_value:
        view["headers"] = [header_view(name, value) for name, value in letter.original_headers]
        view |= value_view(letter.value)
    return view


def run_view(run: ReplayRun) -> dict[str, Any]:
    counts = asdict(run.counts)
    done = run.counts.replayed
    if run.dry_run and run.status is RunStatus.COMPLETED:
        done = run.counts.selected
    return {
        "id": run.id,
        "status": run.status.value,
        "requested_by": run.requested_by,
        "dry_run": run.dry_run,
        "filters": run.filters,
        "rate_per_second": run.rate_per_second,
        "cancel_requested": run.cancel_requested,
        "progress": {"total": run.counts.selected, "done": done},
        "counts": counts,
        "error": run.error,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.heartbeat_at),
        "finished_at": _iso(run.finished_at),
    }
