"""Dead letters: the original bytes and key, plus headers that say why, where and how often.

A dead letter on ``batchline.dlq`` keeps the source message's value and key unchanged so a
replay can put it back exactly as it was produced.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from streams import topics
from streams.messages import ConsumedMessage
from streams.producer import OutgoingMessage


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


_OWN_HEADERS = {h.value for h in Header}
_MAX_MESSAGE_CHARS = 2000


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    error_class: str
    error_message: str
    source_topic: str
    source_partition: int
    source_offset: int
    stage: Stage
    attempts: int
    first_failed_at: datetime
    replay_count: int = 0
    key: bytes | None = None
    value: bytes | None = None
    # Headers of the source message other than batchline's own.
    original_headers: tuple[tuple[str, bytes], ...] = ()
    # Where this dead letter itself sits on the dead-letter topic, once read back.
    dlq_partition: int | None = None
    dlq_offset: int | None = None

    @classmethod
    def for_failure(
        cls,
        message: ConsumedMessage,
        error: BaseException,
        stage: Stage,
        attempts: int,
        first_failed_at: datetime | None = None,
    ) -> DeadLetter:
        replay = message.header(Header.REPLAY_COUNT)
        return cls(
            error_class=type(error).__name__,
            error_message=str(error)[:_MAX_MESSAGE_CHARS],
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            stage=stage,
            attempts=attempts,
            first_failed_at=first_failed_at or datetime.now(UTC),
            replay_count=int(replay) if replay and replay.isdigit() else 0,
            key=message.key,
            value=message.value,
            original_headers=tuple((k, v) for k, v in message.headers if k not in _OWN_HEADERS),
        )

    def to_message(self) -> OutgoingMessage:
        headers = [
            *self.original_headers,
            (Header.ERROR_CLASS.value, self.error_class.encode()),
            (Header.ERROR_MESSAGE.value, self.error_message.encode()),
            (Header.SOURCE_TOPIC.value, self.source_topic.encode()),
            (Header.SOURCE_PARTITION.value, str(self.source_partition).encode()),
            (Header.SOURCE_OFFSET.value, str(self.source_offset).encode()),
            (Header.STAGE.value, self.stage.value.encode()),
            (Header.ATTEMPTS.value, str(self.attempts).encode()),
            (Header.FIRST_FAILED_AT.value, self.first_failed_at.isoformat().encode()),
            (Header.REPLAY_COUNT.value, str(self.replay_count).encode()),
        ]
        return OutgoingMessage(topics.DLQ, self.value, self.key, headers)

    @classmethod
    def from_message(cls, message: ConsumedMessage) -> DeadLetter:
        """Read a dead letter back from ``batchline.dlq``."""

        def text(header: Header, default: str = "") -> str:
            raw = message.header(header.value)
            return raw.decode("utf-8", "replace") if raw is not None else default

        return cls(
            error_class=text(Header.ERROR_CLASS, "unknown"),
            error_message=text(Header.ERROR_MESSAGE),
            source_topic=text(Header.SOURCE_TOPIC, topics.INGEST),
            source_partition=int(text(Header.SOURCE_PARTITION, "-1")),
            source_offset=int(text(Header.SOURCE_OFFSET, "-1")),
            stage=Stage(text(Header.STAGE, Stage.PROCESS.value)),
            attempts=int(text(Header.ATTEMPTS, "0")),
            first_failed_at=datetime.fromisoformat(
                text(Header.FIRST_FAILED_AT, datetime.now(UTC).isoformat())
            ),
            replay_count=int(text(Header.REPLAY_COUNT, "0")),
            key=message.key,
            value=message.value,
            original_headers=tuple((k, v) for k, v in message.headers if k not in _OWN_HEADERS),
            dlq_partition=message.partition,
            dlq_offset=message.offset,
        )
