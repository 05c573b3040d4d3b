"""Outcome and domain-event contracts."""

from __future__ import annotations

from streams.events import (
    RecordError,
    RecordOutcome,
    RecordStatus,
    encode_outcome,
    stable_event_id,
)


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


def test_event_ids_are_stable_per_record_and_attempt() -> None:
    assert stable_event_id("b", 1, 0) == stable_event_id("b", 1, 0)
    assert (
        len(
            {
                stable_event_id("b", 1, 0),
                stable_event_id("b", 2, 0),
                stable_event_id("b", 1, 1),
                stable_event_id("c", 1, 0),
            }
        )
        == 4
    )
