"""Events batchline emits: per-chunk outcomes and domain events."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator, with_config
from typing_extensions import TypedDict

from batchline.vocabulary import RecordError, RecordStatus
from streams import codec


# A TypedDict, not a model: a chunk carries a thousand of these, and validating them into
# dicts costs the projector a third of what building model instances does.
@with_config(ConfigDict(extra="forbid"))
class RecordOutcome(TypedDict):
    """What happened to one record of a chunk."""

    index: Annotated[int, Field(ge=0, description="The record's position in its batch.")]
    status: RecordStatus
    id: Annotated[str | None, Field(description="The stored record's id; null if failed.")]
    error: Annotated[RecordError | None, Field(description="Why it failed; null if not.")]
    details: Annotated[Any, Field(description="Per-field errors or database details.")]


class ChunkOutcome(BaseModel):
    """What happened to the records of one chunk; keyed by batch id on ``batchline.outcomes``.

    One message per chunk (version 1 was one per record); its outcomes are in index order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[2] = 2
    batch_id: str
    entity: str
    attempt: int = Field(default=0, ge=0, description="0 for the first run, +1 per retry.")
    record_count: int = Field(ge=1, description="Records in the whole batch.")
    outcomes: list[RecordOutcome] = Field(
        min_length=1, description="One per record of the chunk, in index order."
    )

    @model_validator(mode="after")
    def _in_index_order(self) -> ChunkOutcome:
        indices = [o["index"] for o in self.outcomes]
        if any(a >= b for a, b in itertools.pairwise(indices)):
            raise ValueError("outcomes must be in index order, each index once")
        return self

    @property
    def first_index(self) -> int:
        return self.outcomes[0]["index"]

    @property
    def last_index(self) -> int:
        return self.outcomes[-1]["index"]


_STATUS_JSON = {status: codec.dumps(status.value) for status in RecordStatus}
_ERROR_JSON: dict[RecordError | None, bytes] = {
    None: b"null",
    **{error: codec.dumps(error.value) for error in RecordError},
}
_CHUNK_OUTCOME = (
    b'{"schema_version":2,"batch_id":%b,"entity":%b,"attempt":%d,"record_count":%d,"outcomes":[%b]}'
)
_RECORD_OUTCOME = b'{"index":%d,"status":%b,"id":%b,"error":%b,"details":%b}'
_NO_DETAILS = codec.dumps(None)


def encode_outcome(
    batch_id: str,
    entity: str,
    attempt: int,
    record_count: int,
    outcomes: Iterable[tuple[int, RecordStatus, str | None, RecordError | None, Any]],
) -> bytes:
    """A ChunkOutcome's wire form from ``(index, status, id, error, details)`` in index
    order, without building the models (the inserter's hot path). tests/unit pins it to
    the model and to orjson's bytes.
    """
    dumps = codec.dumps
    records = b",".join(
        _RECORD_OUTCOME
        % (
            index,
            _STATUS_JSON[status],
            dumps(entity_id),
            _ERROR_JSON[error],
            _NO_DETAILS if details is None else dumps(details),
        )
        for index, status, entity_id, error, details in outcomes
    )
    return _CHUNK_OUTCOME % (dumps(batch_id), dumps(entity), attempt, record_count, records)


# Kafka's default largest message is 1 MiB (a broker's message.max.bytes, a topic's
# max.message.bytes): a chunk whose outcomes take more goes out as several messages.
OUTCOME_MESSAGE_MAX_BYTES = 900_000


def encode_outcomes(
    batch_id: str,
    entity: str,
    attempt: int,
    record_count: int,
    outcomes: Sequence[tuple[int, RecordStatus, str | None, RecordError | None, Any]],
) -> list[bytes]:
    """The chunk's outcome message, or consecutive parts of it when one message would be
    larger than a broker takes (long error details on many records)."""
    encoded = encode_outcome(batch_id, entity, attempt, record_count, outcomes)
    if len(encoded) <= OUTCOME_MESSAGE_MAX_BYTES or len(outcomes) == 1:
        return [encoded]
    half = len(outcomes) // 2
    return encode_outcomes(
        batch_id, entity, attempt, record_count, outcomes[:half]
    ) + encode_outcomes(batch_id, entity, attempt, record_count, outcomes[half:])


class DomainEvent(BaseModel):
    """A committed change, published at least once; ``eventId`` is stable across re-sends.

    Keyed by the entity id, on ``batchline.events.activity``, ``batchline.events.entity.<name>``
    or ``{env}.{tenant}.inventory.instance``; only for requests that asked for events.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    eventId: str = Field(
        description="UUID derived from the batch (its id and creation), record index and "
        "attempt: a re-sent event has the same one, so consumers can de-duplicate."
    )
    eventTs: int = Field(description="Commit time, epoch milliseconds.")
    type: Literal["CREATE", "UPDATE", "DELETE"]
    entity: str | None = Field(default=None, description="Entity name, e.g. activity.")
    tenant: str | None = None
    old: dict[str, Any] | None = Field(default=None, description="The record before an update.")
    new: dict[str, Any] | None = Field(default=None, description="The record as committed.")


_EVENT_NAMESPACE = uuid.UUID("5f0c2a8e-3b1e-4f7a-9d51-6a2f7f6b9c10")


def stable_event_id(batch_id: str, batch_created: str, index: int, attempt: int) -> str:
    """The same record outcome always yields the same event id, so consumers can de-duplicate.

    ``batch_created`` (when the batch header was written) tells apart two batches that had
    the same id in turn: deleting a batch frees its id.
    """
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{batch_id}/{batch_created}/{index}/{attempt}"))
