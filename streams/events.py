"""Events batchline emits: per-record outcomes and domain events."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from batchline.vocabulary import RecordError, RecordStatus
from streams import codec


class RecordOutcome(BaseModel):
    """What happened to one record; keyed by batch id on ``batchline.outcomes``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: str
    index: int = Field(ge=0, description="The record's position in its batch.")
    attempt: int = Field(default=0, ge=0, description="0 for the first run, +1 per retry.")
    status: RecordStatus
    entity: str
    id: str | None = Field(default=None, description="The stored record's id; null if failed.")
    error: RecordError | None = Field(default=None, description="Why it failed; null if not.")
    details: Any = Field(default=None, description="Per-field errors or database details.")
    record_count: int = Field(ge=1, description="Records in the whole batch.")


_STATUS_JSON = {status: codec.dumps(status.value) for status in RecordStatus}
_ERROR_JSON: dict[RecordError | None, bytes] = {
    None: b"null",
    **{error: codec.dumps(error.value) for error in RecordError},
}
_OUTCOME = (
    b'{"batch_id":%b,"index":%d,"attempt":%d,"status":%b,"entity":%b,"id":%b,"error":%b,'
    b'"details":%b,"record_count":%d}'
)


def encode_outcome(
    batch_id: str,
    index: int,
    attempt: int,
    status: RecordStatus,
    entity: str,
    entity_id: str | None,
    error: RecordError | None,
    details: Any,
    record_count: int,
) -> bytes:
    """A RecordOutcome's wire form, without building the model: the inserter's hot path
    emits one per record. tests/unit pins it to the model and to orjson's bytes.

    Formatted rather than one ``dumps`` of a dict: orjson hands back each document in a
    fresh buffer of a kilobyte or more, and with a chunk's thousand outcomes alive until
    they are delivered, those allocations add up (README, Performance). Its small
    ``dumps`` results here are freed at once.
    """
    return _OUTCOME % (
        codec.dumps(batch_id),
        index,
        attempt,
        _STATUS_JSON[status],
        codec.dumps(entity),
        codec.dumps(entity_id),
        _ERROR_JSON[error],
        codec.dumps(details),
        record_count,
    )


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
