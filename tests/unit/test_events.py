"""Outcome and domain-event contracts."""

from __future__ import annotations

import pytest

from batchline.vocabulary import RecordError, RecordStatus
from streams import codec
from streams.events import RecordOutcome, encode_outcome, stable_event_id


def test_the_hot_path_encoding_of_an_outcome_is_a_valid_record_outcome() -> None:
    encoded = encode_outcome(
        "batch-001",
        2,
        1,
        RecordStatus.FAILED,
        "activity",
        None,
        RecordError.UNIQUE_CONSTRAINT_VIOLATION,
        [{"field": "x"}],
        4,
    )

    outcome = RecordOutcome.model_validate_json(encoded)

    assert outcome == RecordOutcome(
        batch_id="batch-001",
        index=2,
        attempt=1,
        status=RecordStatus.FAILED,
        entity="activity",
        id=None,
        error=RecordError.UNIQUE_CONSTRAINT_VIOLATION,
        details=[{"field": "x"}],
        record_count=4,
    )


@pytest.mark.parametrize(
    ("batch_id", "entity_id", "error", "details"),
    [
        ("batch-001", "pa-1", None, None),
        ('quote"back\\slash-\u00e9-\U0001f600', 'id"\n', None, {"a": 1.5}),
        ("b", None, RecordError.VALIDATION_ERROR, [{"field": None, "message": "\x00\u00e9"}]),
    ],
)
def test_the_hot_path_encoding_is_what_orjson_makes_of_the_fields(
    batch_id: str, entity_id: str | None, error: RecordError | None, details: object
) -> None:
    status = RecordStatus.FAILED if error else RecordStatus.INSERTED
    fields = {
        "batch_id": batch_id,
        "index": 12,
        "attempt": 3,
        "status": status.value,
        "entity": "activity",
        "id": entity_id,
        "error": error.value if error else None,
        "details": details,
        "record_count": 40,
    }

    encoded = encode_outcome(batch_id, 12, 3, status, "activity", entity_id, error, details, 40)

    assert encoded == codec.dumps(fields)


def test_event_ids_are_stable_per_record_and_attempt() -> None:
    created = "2026-03-28T10:00:00+00:00"
    assert stable_event_id("b", created, 1, 0) == stable_event_id("b", created, 1, 0)
    assert (
        len(
            {
                stable_event_id("b", created, 1, 0),
                stable_event_id("b", created, 2, 0),
                stable_event_id("b", created, 1, 1),
                stable_event_id("c", created, 1, 0),
                # The same id again after the first batch was deleted.
                stable_event_id("b", "2026-03-28T11:00:00+00:00", 1, 0),
            }
        )
        == 5
    )
