"""What happened to one record, as the worker decides it and every reader reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from batchline.vocabulary import RecordError, RecordStatus


class FieldError(BaseModel):
    """One field's problem, in pydantic's words (``type`` is its error type)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    field: str | None = None
    message: str | None = None
    type: str | None = None


class RecordDetails(BaseModel):
    """Why a record failed, beyond its error code. Each error sets the keys it knows; on the
    wire and in the database it is JSON holding only those keys."""

    model_config = ConfigDict(extra="allow", frozen=True)

    message: str | None = None  # the sentence a client reads
    reason: str | None = None  # generic entities: the reason their API answers with
    fields: list[FieldError] | None = None  # instances: the per-field validation errors
    errors: list[dict[str, Any]] | None = None  # generic entities: the per-field problems
    # Generic entities: the first problem of each invalid field, as Gemini names them
    # ({"<field>": {"error": "REQUIRED", "reason": "required"}}).
    fieldValidationErrors: dict[str, dict[str, str]] | None = None
    # unique_constraint_violation: the key, and what it collided with: a stored record
    # (existing_id) or an earlier record of the same batch (first_index).
    key: dict[str, str] | None = None  # activities: the unique key's fields
    lk: str | None = None  # generic entities: the logical key, as text
    existing_id: str | None = None
    first_index: int | None = None
    line: int | None = None  # instance bulk: the file's line that was no JSON object
    sqlstate: str | None = None  # database_error: PostgreSQL's code
    dead_letter: str | None = None  # processing_failed: the error its chunk was dead-lettered with


# A list is pydantic's per-field errors (activities, a NUL character); else one object.
FailureDetails = RecordDetails | list[FieldError]
_DETAILS: TypeAdapter[FailureDetails | None] = TypeAdapter(FailureDetails | None)


def parse_details(stored: Any) -> FailureDetails | None:
    """Details as stored (JSON) or sent, typed; a shape no code writes reads as none."""
    try:
        return _DETAILS.validate_python(stored)
    except ValidationError:
        return None


def details_json(details: FailureDetails | None) -> Any:
    """The JSON value of ``details``: only the keys its writer set."""
    if details is None:
        return None
    if isinstance(details, list):
        return [error.model_dump(exclude_unset=True) for error in details]
    return details.model_dump(exclude_unset=True)


@dataclass(slots=True)
class RecordResult:
    index: int
    status: RecordStatus
    entity_id: str | None = None
    error: RecordError | None = None
    # JSON, as the ledger and the outcome event carry it: ``details_json`` of a typed value.
    details: Any = None
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None

    @classmethod
    def failed(
        cls, index: int, error: RecordError, details: FailureDetails | None = None
    ) -> RecordResult:
        return cls(
            index=index, status=RecordStatus.FAILED, error=error, details=details_json(details)
        )


def field_errors(error: ValidationError) -> list[FieldError]:
    """pydantic errors as the per-record ``details`` clients see."""
    return [
        FieldError(
            field=".".join(str(part) for part in item["loc"]) or None,
            message=item["msg"],
            type=item["type"],
        )
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """``field_errors`` as JSON, for an API error body."""
    return [field.model_dump(exclude_unset=True) for field in field_errors(error)]
