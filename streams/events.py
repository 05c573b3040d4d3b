"""Events batchline emits: per-record outcomes and domain events."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RecordStatus(StrEnum):
    INSERTED = "inserted"
    UPDATED = "updated"
    DELETED = "deleted"
    FAILED = "failed"


class RecordError(StrEnum):
    """Machine-readable reasons a record failed; the one list of them."""

    VALIDATION_ERROR = "validation_error"
    UNIQUE_CONSTRAINT_VIOLATION = "unique_constraint_violation"
    OPTIMISTIC_LOCKING = "optimistic_locking"
    REFERENCE_NOT_FOUND = "reference_not_found"
    CONVERSION_ERROR = "conversion_error"  # a value is not of its field's type
    RECORD_NOT_FOUND = "record_not_found"  # update/patch/delete of a key that does not exist
    REFERENCE_IN_USE = "reference_in_use"  # delete of a record other records reference
    DATABASE_ERROR = "database_error"
    PROCESSING_FAILED = "processing_failed"
    NOT_PROCESSED = "not_processed"  # rolled back: another record of its atomic chunk failed


class RecordOutcome(BaseModel):
    """What happened to one record; keyed by batch id on ``batchline.outcomes``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: str
    index: int = Field(ge=0)
    attempt: int = Field(default=0, ge=0)
    status: RecordStatus
    entity: str
    id: str | None = None
    error: RecordError | None = None
    details: Any = None
    record_count: int = Field(ge=1, description="Records in the whole batch.")


class DomainEvent(BaseModel):
    """A committed change, published at least once; ``eventId`` is stable across re-sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eventId: str
    eventTs: int = Field(description="Commit time, epoch milliseconds.")
    type: Literal["CREATE", "UPDATE", "DELETE"]
    entity: str | None = None
    tenant: str | None = None
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None


_EVENT_NAMESPACE = uuid.UUID("5f0c2a8e-3b1e-4f7a-9d51-6a2f7f6b9c10")


def stable_event_id(batch_id: str, index: int, attempt: int) -> str:
    """The same record outcome always yields the same event id, so consumers can de-duplicate."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{batch_id}/{index}/{attempt}"))
