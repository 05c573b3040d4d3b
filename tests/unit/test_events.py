"""Outcome and domain-event contracts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from batchline.vocabulary import RecordError, RecordStatus
from streams import codec
from streams.events import (
    OUTCOME_MESSAGE_MAX_BYTES,
    ChunkOutcome,
    encode_outcome,
    encode_outcomes,
    stable_event_id,
)


def test_the_hot_path_encoding_of_a_chunk_outcome_is_a_valid_chunk_outcome() -> None:
    encoded = encode_outcome(
        "batch-001",
        "activity",
        1,
        4,
        [
            (0, RecordStatus.INSERTED, "pa-001", None, None),
            (2, RecordStatus.FAILED, None, RecordError.UNIQUE_CONSTRAINT_VIOLATION, [{"f": 1}]),
        ],
    )

    outcome = ChunkOutcome.model_validate_json(encoded)

    assert outcome == ChunkOutcome(
        batch_id="batch-001",
        entity="activity",
        attempt=1,
        record_count=4,
        outcomes=[
            {"index": 0, "status": RecordStatus.INSERTED, "id": "pa-001", "error": None,
             "details": None},
            {"index": 2, "status": RecordStatus.FAILED, "id": None,
             "error": RecordError.UNIQUE_CONSTRAINT_VIOLATION, "details": [{"f": 1}]},
        ],
    )  # fmt: skip
    assert (outcome.first_index, outcome.last_index) == (0, 2)


def test_a_chunk_outcome_lists_its_records_in_index_order_each_once() -> None:
    shuffled = encode_outcome(
        "b",
        "activity",
        0,
        4,
        [(2, RecordStatus.INSERTED, "x", None, None), (1, RecordStatus.INSERTED, "y", None, None)],
    )

    with pytest.raises(ValidationError, match="index order"):
        ChunkOutcome.model_validate_json(shuffled)


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
        "schema_version": 2,
        "batch_id": batch_id,
        "entity": "activity",
        "attempt": 3,
        "record_count": 40,
        "outcomes": [
            {
                "index": 12,
                "status": status.value,
                "id": entity_id,
                "error": error.value if error else None,
                "details": details,
            }
        ],
    }

    encoded = encode_outcome(batch_id, "activity", 3, 40, [(12, status, entity_id, error, details)])

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


def test_outcomes_too_large_for_one_message_go_out_in_consecutive_parts() -> None:
    details = [{"message": "x" * 2000}]
    outcomes = [
        (n, RecordStatus.FAILED, None, RecordError.DATABASE_ERROR, details) for n in range(1000)
    ]

    messages = encode_outcomes("b", "activity", 0, 1000, outcomes)

    assert len(messages) > 1
    assert all(len(m) <= OUTCOME_MESSAGE_MAX_BYTES for m in messages)
    parts = [ChunkOutcome.model_validate_json(m) for m in messages]
    assert [o["index"] for part in parts for o in part.outcomes] == list(range(1000))
    assert all(b"\n" not in m for m in messages)  # the ledger keeps them one per line
    assert encode_outcomes("b", "activity", 0, 1000, outcomes[:3]) == [
        encode_outcome("b", "activity", 0, 1000, outcomes[:3])
    ]
