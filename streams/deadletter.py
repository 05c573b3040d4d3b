"""Dead letters: the original bytes and key, plus headers that say why, where and how often.

A dead letter on ``batchline.dlq`` keeps the source message's value and key unchanged so a
replay can put it back exactly as it was produced. The ``batchline.*`` headers are the
fields of :class:`DeadLetterHeaders`; its JSON Schema is published in ``streams/schemas``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchline.metrics import Metrics
from batchline.retry import RetryPolicy
from streams import codec, topics
from streams.messages import ConsumedMessage
from streams.producer import AsyncProducer, DeliveryError, OutgoingMessage

log = logging.getLogger(__name__)


class Stage(StrEnum):
    DECODE = "decode"  # not JSON
    VALIDATE = "validate"  # JSON, but not an ingest envelope
    ROUTE = "route"  # names an entity nobody writes
    PROCESS = "process"  # kept failing after bounded retries


class Header(StrEnum):
    ERROR_CLASS = "batchline.error.class"
    ERROR_MESSAGE = "batchline.error.message"
    SOURCE_TOPIC = "batchline.source.topic"
    SOURCE_PARTITION = "batchline.source.partition"
    SOURCE_OFFSET = "batchline.source.offset"
    STAGE = "batchline.stage"
    ATTEMPTS = "batchline.attempts"
    FIRST_FAILED_AT = "batchline.first_failed_at"
    # Carried on the replayed message itself, so a message that fails again is parked.
    REPLAY_COUNT = "batchline.replay.count"


# Set by a replay on the message it puts back: a random token that PostgreSQL keeps with the
# replay count, so only a message a replay sent has a replay count (any client can set
# headers, this one included, but cannot guess a token).
REPLAY_TOKEN_HEADER = "batchline.replay.token"  # noqa: S105 - a header name, no secret
# Set by a replay on the message it puts back, and kept through further failures: where the
# message was first consumed, so a chunk without a batch id keeps the batch id derived
# from its first position instead of getting a new one per replay.
ORIGIN_HEADER = "batchline.origin"
# On a dead letter whose value the dead-letter topic would not take (too large): how large
# it was, and where the original still is. Such a letter is a record, not a replayable copy.
VALUE_OMITTED_HEADER = "batchline.value.omitted"

_OWN_HEADERS = {h.value for h in Header} | {VALUE_OMITTED_HEADER, REPLAY_TOKEN_HEADER}
_MAX_MESSAGE_CHARS = 2000


class DeadLetterHeaders(BaseModel):
    """The ``batchline.*`` headers of a message on ``batchline.dlq``.

    The message's key and value are the failed message's original bytes, unchanged; its
    other headers are kept too. Each header value is the UTF-8 text of the field below
    (integers in decimal, times in ISO 8601).
    """

    model_config = ConfigDict(frozen=True)

    error_class: str = Field(
        serialization_alias=Header.ERROR_CLASS.value,
        description="Python class of the error, e.g. ValidationError, UnknownEntity.",
    )
    error_message: str = Field(
        serialization_alias=Header.ERROR_MESSAGE.value,
        description="The error's message, at most 2000 characters.",
    )
    source_topic: str = Field(
        serialization_alias=Header.SOURCE_TOPIC.value,
        description="Topic the message was consumed from; a replay produces it there again.",
    )
    source_partition: int = Field(serialization_alias=Header.SOURCE_PARTITION.value)
    source_offset: int = Field(serialization_alias=Header.SOURCE_OFFSET.value)
    stage: Stage = Field(
        serialization_alias=Header.STAGE.value,
        description="decode: not JSON; validate: not a valid envelope; route: unknown entity "
        "or operation; process: kept failing after bounded retries.",
    )
    attempts: int = Field(
        ge=0, serialization_alias=Header.ATTEMPTS.value, description="Processing attempts made."
    )
    first_failed_at: datetime = Field(
        serialization_alias=Header.FIRST_FAILED_AT.value,
        description="When the first attempt failed.",
    )
    replay_count: int = Field(
        default=0,
        ge=0,
        serialization_alias=Header.REPLAY_COUNT.value,
        description="How often the message had been replayed before this failure; at the "
        "replay limit it is parked, not replayed again.",
    )


_FIELD_HEADERS: dict[str, str] = {
    name: str(field.serialization_alias) for name, field in DeadLetterHeaders.model_fields.items()
}
# What a dead letter that lacks some of our headers (written by hand, say) reads as.
_FALLBACKS: dict[str, str] = {
    "error_class": "unknown",
    "error_message": "",
    "source_topic": topics.INGEST,
    "source_partition": "-1",
    "source_offset": "-1",
    "stage": Stage.PROCESS.value,
    "attempts": "0",
    "replay_count": "0",
}


class DeadLetter(DeadLetterHeaders):
    key: bytes | None = None
    value: bytes | None = None
    # Headers of the source message other than batchline's own, in order, repeated names
    # and null values kept.
    original_headers: tuple[tuple[str, bytes | None], ...] = ()
    # Where this dead letter itself sits on the dead-letter topic, once read back.
    dlq_partition: int | None = None
    dlq_offset: int | None = None
    dead_lettered_at: datetime | None = None
    # The replay token the failed message carried: its replay count is the one PostgreSQL
    # keeps for the token (see ``DeadLetterPolicy``), never what a header says.
    replay_token: str | None = None

    @classmethod
    def for_failure(
        cls,
        message: ConsumedMessage,
        error: BaseException,
        stage: Stage,
        attempts: int,
        first_failed_at: datetime | None = None,
    ) -> DeadLetter:
        token = message.header(REPLAY_TOKEN_HEADER)
        return cls(
            error_class=type(error).__name__,
            error_message=str(error)[:_MAX_MESSAGE_CHARS],
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            stage=stage,
            attempts=attempts,
            first_failed_at=first_failed_at or datetime.now(UTC),
            replay_token=token.decode("ascii", "replace") if token else None,
            key=message.key,
            value=message.value,
            original_headers=tuple((k, v) for k, v in message.headers if k not in _OWN_HEADERS),
        )

    def header_values(self) -> dict[str, str]:
        """The ``batchline.*`` headers as text, by header name."""
        fields = self.model_dump(mode="json", include=set(_FIELD_HEADERS))
        return {_FIELD_HEADERS[name]: str(value) for name, value in fields.items()}

    def to_message(self) -> OutgoingMessage:
        headers = [
            *self.original_headers,
            *((name, text.encode()) for name, text in self.header_values().items()),
        ]
        return OutgoingMessage(topics.DLQ, self.value, self.key, headers)

    def to_message_without_value(self) -> OutgoingMessage:
        """The dead letter for a value too large to be sent again: headers and a pointer."""
        message = self.to_message()
        size = len(self.value or b"")
        note = (
            f"{size} bytes, too large for {topics.DLQ};"
            f" the original is at {self.source_topic}:{self.source_partition}:{self.source_offset}"
        )
        headers = [*message.headers, (VALUE_OMITTED_HEADER, note.encode())]
        return OutgoingMessage(message.topic, None, message.key, headers)

    @classmethod
    def from_message(cls, message: ConsumedMessage) -> DeadLetter:
        """Read a dead letter back from ``batchline.dlq``; unreadable headers fall back."""
        values: dict[str, Any] = {}
        for name, header in _FIELD_HEADERS.items():
            raw = message.header(header)
            text = raw.decode("utf-8", "replace") if raw is not None else _FALLBACKS.get(name)
            if text is not None:
                values[name] = text
        values.setdefault("first_failed_at", _timestamp(message) or datetime.now(UTC))
        location = {
            "key": message.key,
            "value": message.value,
            "original_headers": tuple((k, v) for k, v in message.headers if k not in _OWN_HEADERS),
            "dlq_partition": message.partition,
            "dlq_offset": message.offset,
            "dead_lettered_at": _timestamp(message),
        }
        try:
            return cls.model_validate(values | location)
        except ValidationError as exc:
            broken = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
            repaired = {k: v for k, v in values.items() if k not in broken}
            for name in broken:
                if name in _FALLBACKS:
                    repaired[name] = _FALLBACKS[name]
            repaired.setdefault("first_failed_at", datetime.now(UTC))
            return cls.model_validate(repaired | location)

    @property
    def id(self) -> str:
        """``<partition>:<offset>`` on the dead-letter topic."""
        return f"{self.dlq_partition}:{self.dlq_offset}"

    @property
    def origin(self) -> str:
        """``topic:partition:offset`` where the message was first consumed."""
        for name, value in self.original_headers:
            if name == ORIGIN_HEADER and value is not None:
                return value.decode("utf-8", "replace")
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}"

    def envelope_field(self, name: str) -> Any:
        """A top-level field of the value when it is a JSON object (entity, batch_id)."""
        if not self.value:
            return None
        with contextlib.suppress(ValueError):
            document = codec.loads(self.value)
            if isinstance(document, dict):
                return document.get(name)
        return None

    def replay_message(self, token: str) -> OutgoingMessage:
        """The original message for its source topic, its replay count one higher and
        ``token`` (kept with that count in PostgreSQL) to prove it."""
        kept = [(k, v) for k, v in self.original_headers if k != ORIGIN_HEADER]
        headers = [
            *kept,
            (ORIGIN_HEADER, self.origin.encode()),
            (Header.REPLAY_COUNT.value, str(self.replay_count + 1).encode()),
            (REPLAY_TOKEN_HEADER, token.encode()),
        ]
        return OutgoingMessage(self.source_topic, self.value, self.key, headers)


def _timestamp(message: ConsumedMessage) -> datetime | None:
    if message.timestamp_ms is None or message.timestamp_ms <= 0:
        return None
    return datetime.fromtimestamp(message.timestamp_ms / 1000, UTC)


class InvalidMessage(Exception):
    """A message no retry can fix, and the stage that found it out: it is dead-lettered.

    ``attempts`` and ``first_failed_at`` tell a chunk that kept failing (stage ``process``)
    from one refused at first sight.
    """

    def __init__(
        self,
        stage: Stage,
        cause: BaseException,
        attempts: int = 1,
        first_failed_at: datetime | None = None,
    ) -> None:
        super().__init__(str(cause))
        self.stage = stage
        self.cause = cause
        self.attempts = attempts
        self.first_failed_at = first_failed_at

    def letter(self, message: ConsumedMessage) -> DeadLetter:
        return DeadLetter.for_failure(
            message, self.cause, self.stage, self.attempts, self.first_failed_at
        )


class _TooLarge(Exception):
    """A message the producer or the topic will never take, however often it is sent."""


# The replay count kept for a replay token (0 for a token nobody wrote).
ReplayCounts = Callable[[str], Awaitable[int]]


class DeadLetterPolicy:
    """How dead letters are sent, by every consumer alike: counted, logged, retried until the
    broker takes them (the source offset waits meanwhile), and without their value when
    the value is too large for the dead-letter topic."""

    def __init__(
        self,
        producer: AsyncProducer,
        retry: RetryPolicy,
        metrics: Metrics,
        replay_counts: ReplayCounts,
    ) -> None:
        self._producer = producer
        self._retry = retry
        self._metrics = metrics
        self._replay_counts = replay_counts

    async def send(self, letter: DeadLetter) -> None:
        token = letter.replay_token
        if token:
            # The count the replay that sent the message wrote for its token; none without.
            count = await self._retry.until_done(
                lambda: self._replay_counts(token), "reading a replay count"
            )
            letter = letter.model_copy(update={"replay_count": count})
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
            await self._retry.until_done(send, "sending dlq", _TooLarge)
        except _TooLarge:
            # Retrying would wedge the partition forever; the original stays on its topic.
            log.error("dead letter too large for %s; sent without its value", topics.DLQ)
            await self._retry.until_done(
                lambda: self._producer.send_many([letter.to_message_without_value()]),
                "sending dlq",
            )
