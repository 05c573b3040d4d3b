"""The ingest envelope contract and how the front door chunks a batch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from consumers.inserter import decode_chunk
from streams.deadletter import InvalidMessage, Stage
from streams.envelopes import ChunkOptions, IngestChunk
from streams.messages import ConsumedMessage
from streams.publisher import chunk_messages
from streams.topics import INGEST


def test_a_batch_is_split_into_valid_envelopes_with_consecutive_indices() -> None:
    records = [{"n": n} for n in range(2500)]

    messages = list(chunk_messages("batch-007", "activity", records, 1000, ChunkOptions()))

    chunks = [IngestChunk.model_validate_json(m.value or b"") for m in messages]
    assert [m.topic for m in messages] == [INGEST] * 3
    assert {m.key for m in messages} == {b"batch-007"}
    assert [len(c.records) for c in chunks] == [1000, 1000, 500]
    indices = [i for c in chunks for i in c.record_indices()]
    assert indices == list(range(2500))
    assert all(c.total_records == 2500 for c in chunks)


def test_a_retry_carries_explicit_indices_and_its_attempt() -> None:
    messages = list(
        chunk_messages(
            "batch-001",
            "activity",
            [{"a": 1}, {"a": 2}],
            1,
            ChunkOptions(ignore_constraints=True),
            record_count=10,
            attempt=2,
            indices=[3, 7],
        )
    )

    chunks = [IngestChunk.model_validate_json(m.value or b"") for m in messages]
    assert [c.record_indices() for c in chunks] == [[3], [7]]
    assert all(c.attempt == 2 and c.options.ignore_constraints for c in chunks)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"entity": "activity", "records": []}',
        b'{"entity": "activity", "records": [1], "unknown": true}',
        b'{"entity": "activity", "records": [1, 2], "indices": [0]}',
        b'{"entity": "activity", "records": [1], "record_count": 1, "first_index": 1}',
        b'{"records": [1]}',
        # PostgreSQL integers: larger counts, attempts and indices cannot be stored.
        b'{"entity": "activity", "records": [1], "record_count": 2147483648}',
        b'{"entity": "activity", "records": [1], "attempt": 1099511627776}',
        b'{"entity": "activity", "records": [1], "record_count": 1, "indices": [-1]}',
        b'{"entity": "activity", "records": [1, 2], "record_count": 2, "indices": [0, 0]}',
        # Strict, as the schema says: a string is no count, true is no index or flag.
        b'{"entity": "activity", "records": [1], "record_count": "1"}',
        b'{"entity": "activity", "records": [1, 2], "record_count": 2, "indices": [0, true]}',
        b'{"entity": "activity", "records": [1], "options": {"atomic": "yes"}}',
    ],
)
def test_malformed_envelopes_are_rejected(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        IngestChunk.model_validate_json(payload)


def test_a_chunk_without_record_count_is_the_whole_batch() -> None:
    chunk = IngestChunk.model_validate_json(b'{"entity": "activity", "records": [{}, {}]}')
    assert chunk.total_records == 2
    assert chunk.batch_id is None


def _consumed(value: bytes) -> ConsumedMessage:
    return ConsumedMessage(topic=INGEST, partition=0, offset=0, key=None, value=value)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"entity": "activity", "records": [{"a": "\\u00e9", "b": [1.5, -0, 1e400, NaN]}]}',
        b'{"entity": "activity", "records": [123456789012345678901234567890]}',
        b'{"entity": "a", "records": [1, 2], "indices": [1.0, 0], "schema_version": 1.0}',
        b'{"entity": "a", "records": [' + b"[" * 199 + b"]" * 199 + b"]}",
    ],
)
def test_decoding_reads_a_chunk_as_pydantic_reads_its_json(payload: bytes) -> None:
    assert repr(decode_chunk(_consumed(payload))) == repr(IngestChunk.model_validate_json(payload))


@pytest.mark.parametrize(
    ("payload", "stage"),
    [
        (b"\xff{not json", Stage.DECODE),
        (b'{"entity": "a", "records": [' + b"[" * 200 + b"]" * 200 + b"]}", Stage.DECODE),
        (b'{"entity": "a", "records": [1], "attempt": 1.5}', Stage.VALIDATE),
        (b'{"entity": "a", "records": [1], "attempt": "2"}', Stage.VALIDATE),
        (b'{"entity": "a", "records": [1], "options": {"atomic": 1}}', Stage.VALIDATE),
        (b'{"entity": "a", "records": [1], "options": {"tenant": "a-b"}}', Stage.VALIDATE),
    ],
)
def test_a_chunk_pydantic_refuses_is_refused_with_pydantics_error(
    payload: bytes, stage: Stage
) -> None:
    with pytest.raises(ValidationError) as expected:
        IngestChunk.model_validate_json(payload)

    with pytest.raises(InvalidMessage) as refused:
        decode_chunk(_consumed(payload))

    assert refused.value.stage is stage
    assert str(refused.value.cause) == str(expected.value)
