"""How /data answers failed records, whatever shape of details the pipeline gave them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.entity_data import GeminiError, raise_failures
from batchline.entities.schema import EntitySchema, load_registry
from batchline.vocabulary import RecordError, RecordStatus
from sql.results import StoredResult

CATEGORY = load_registry(Path(__file__).resolve().parents[2] / "entities").require("category")
# What the inserter records for a record holding a NUL character, before any writer runs.
NUL_DETAILS = [
    {
        "field": None,
        "message": "Text must not contain NUL (\\u0000) characters",
        "type": "nul_character",
    }
]


def failed(index: int, error: str, details: Any) -> StoredResult:
    """A failed result as the projection gives it (an error code it may not know yet too)."""
    code: Any = RecordError(error) if error in RecordError.__members__.values() else error
    return StoredResult(index, RecordStatus.FAILED, None, code, details, (0, index))


def answer(entity: EntitySchema, rows: list[StoredResult], *, many: bool) -> tuple[int, Any]:
    with pytest.raises(GeminiError) as raised:
        raise_failures(entity, rows, many=many)
    return raised.value.status, {"reason": raised.value.reason, "errors": raised.value.errors}


# What the generic writer records for a record whose fields it found invalid.
MISSING_ID = {
    "reason": "EntityRecord of CATEGORY with id null invalid",
    "errors": [{"field": "id", "reason": "required"}],
    "fieldValidationErrors": {"id": {"error": "REQUIRED", "reason": "required"}},
}


def test_a_record_the_writer_found_invalid_answers_gemini_field_errors() -> None:
    rows = [failed(0, "validation_error", MISSING_ID)]

    with pytest.raises(GeminiError) as raised:
        raise_failures(CATEGORY, rows, many=False)

    assert raised.value.reason == "EntityRecord of CATEGORY with id null invalid"
    assert raised.value.fields == {"id": {"error": "REQUIRED", "reason": "required"}}
    assert raised.value.records is None


def test_in_a_list_each_record_has_its_entry_and_a_valid_one_an_empty_one() -> None:
    rows = [
        failed(0, "not_processed", None),
        failed(1, "validation_error", MISSING_ID),
    ]

    with pytest.raises(GeminiError) as raised:
        raise_failures(CATEGORY, rows, many=True)

    assert raised.value.reason == "EntityRecords are invalid"
    assert raised.value.records == [{}, {"id": {"error": "REQUIRED", "reason": "required"}}]
    assert raised.value.fields is None


def test_the_inserters_nul_refusal_is_a_400_with_its_message() -> None:
    rows = [failed(0, "validation_error", NUL_DETAILS)]

    assert answer(CATEGORY, rows, many=False) == (
        400,
        {
            "reason": "Invalid record for Entity CATEGORY:"
            " Text must not contain NUL (\\u0000) characters",
            "errors": None,
        },
    )


def test_in_a_list_the_nul_record_is_named_and_the_records_not_processed_are_not() -> None:
    rows = [
        failed(0, "not_processed", None),
        failed(1, "validation_error", NUL_DETAILS),
        failed(2, "not_processed", None),
    ]

    status, body = answer(CATEGORY, rows, many=True)

    assert status == 400
    assert body["errors"] == [
        {"record": 1, "reason": "Text must not contain NUL (\\u0000) characters"}
    ]


def test_a_database_refusal_is_a_400_with_the_database_message() -> None:
    details = {"sqlstate": "22003", "message": "value overflows numeric format"}
    rows = [failed(0, "database_error", details)]

    assert answer(CATEGORY, rows, many=False) == (
        400,
        {
            "reason": "The database refused the record: value overflows numeric format",
            "errors": None,
        },
    )


def test_an_error_code_this_front_door_does_not_know_is_still_a_400() -> None:
    rows = [failed(0, "some_new_code", {"reason": "a new kind of refusal"})]

    assert answer(CATEGORY, rows, many=False) == (
        400,
        {"reason": "a new kind of refusal", "errors": None},
    )
