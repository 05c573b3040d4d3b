"""What happened to one record, as the worker decides it and every reader reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from batchline.vocabulary import RecordError, RecordStatus


@dataclass(slots=True)
class RecordResult:
    index: int
    status: RecordStatus
    entity_id: str | None = None
    error: RecordError | None = None
    details: Any = None
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None

    @classmethod
    def failed(cls, index: int, error: RecordError, details: Any = None) -> RecordResult:
        return cls(index=index, status=RecordStatus.FAILED, error=error, details=details)


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """pydantic errors as the per-record ``details`` clients see."""
    return [
        {
            "field": ".".join(str(part) for part in item["loc"]) or None,
            "message": item["msg"],
            "type": item["type"],
        }
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]
