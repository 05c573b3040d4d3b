"""Every dead-letter cause lands on batchline.dlq with the original bytes, key and headers,
read back here with a plain Kafka consumer; a poison chunk never blocks its partition."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import orjson
import pytest

from batchline.settings import Settings
from batchline.vocabulary import RecordError, RecordStatus
from consumers.app import WorkerResources
from streams.events import encode_outcome
from tests.integration.activities import activity, stored_activities
from tests.integration.kafka import (
    Delivered,
    Record,
    completed_batch,
    produce,
    wait_for_records,
)
from tests.integration.refusals import refusing_ledger, refusing_projection

INGEST = "batchline.ingest"
DLQ = "batchline.dlq"


def _text(record: Record, header: str) -> str:
    return record.headers[header].decode()


async def _dead_letter_of(settings: Settings, key: bytes) -> Record:
    assert settings.kafka_bootstrap_servers is not None
    [letter] = await wait_for_records(settings.kafka_bootstrap_servers, DLQ, lambda r: r.key == key)
    return letter


def _assert_where_and_when(letter: Record, source: Delivered, stage: str, attempts: int) -> None:
    assert _text(letter, "batchline.source.topic") == INGEST
    assert int(_text(letter, "batchline.source.partition")) == source.partition
    assert int(_text(letter, "batchline.source.offset")) == source.offset
    assert _text(letter, "batchline.stage") == stage
    assert int(_text(letter, "batchline.attempts")) == attempts
    first_failed = datetime.fromisoformat(_text(letter, "batchline.first_failed_at"))
    assert abs(datetime.now(UTC) - first_failed) < timedelta(minutes=5)
    assert _text(letter, "batchline.replay.count") == "0"
    assert _text(letter, "batchline.error.message")


@pytest.mark.parametrize(
    ("value", "stage", "error_class", "message_part"),
    [
        pytest.param(b"\xff{not json", "decode", "ValidationError", "json", id="not-json"),
        pytest.param(
            b'{"entity": "activity", "records": []}',
            "validate",
            "ValidationError",
            "records",
            id="envelope-schema",
        ),
        pytest.param(
            b'{"entity": "starship", "records": [{"name": "x"}]}',
            "route",
            "UnknownEntity",
            "starship",
            id="unknown-entity",
        ),
        pytest.param(
            b'{"entity": "activity", "operation": "delete", "records": [{}]}',
            "route",
            "ValueError",
            "delete",
            id="operation-the-entity-does-not-take",
        ),
        pytest.param(
            b'{"entity": "instance", "operation": "upsert", "records": [{}],'
            b' "options": {"publish_events": true, "tenant": "no tenant!"}}',
            "validate",
            "ValidationError",
            "tenant",
            id="tenant-that-cannot-name-a-topic",
        ),
        pytest.param(
            b'{"entity": "activity", "record_count": 2147483648, "records": [{}]}',
            "validate",
            "ValidationError",
            "record_count",
            id="count-beyond-a-database-integer",
        ),
        pytest.param(
            b'{"entity": "activity", "record_count": 1, "indices": [-1], "records": [{}]}',
            "validate",
            "ValidationError",
            "indices",
            id="negative-index",
        ),
        pytest.param(
            b'{"entity": "activity", "record_count": 2, "indices": [0, 0], "records": [{}, {}]}',
            "validate",
            "ValidationError",
            "distinct",
            id="duplicate-indices",
        ),
    ],
)
async def test_a_message_that_cannot_be_read_is_dead_lettered_unchanged(
    settings: Settings,
    worker: WorkerResources,
    tag: str,
    value: bytes,
    stage: str,
    error_class: str,
    message_part: str,
) -> None:
    key = f"poison-{tag}".encode()
    assert settings.kafka_bootstrap_servers is not None

    [source] = produce(
        settings.kafka_bootstrap_servers, INGEST, [(key, value)], headers=[("trace", b"t-1")]
    )

    letter = await _dead_letter_of(settings, key)
    assert letter.value == value
    assert letter.headers["trace"] == b"t-1"
    assert _text(letter, "batchline.error.class") == error_class
    assert message_part in _text(letter, "batchline.error.message").lower()
    _assert_where_and_when(letter, source, stage, attempts=1)


async def test_a_chunk_that_keeps_failing_is_dead_lettered_and_the_chunk_behind_it_goes_on(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    poison_id, good_id = f"refused-{tag}", f"good-{tag}"
    key = f"partition-{tag}".encode()
    poison = {"entity": "activity", "batch_id": poison_id, "records": [activity(tag, 0)]}
    good = {"entity": "activity", "batch_id": good_id, "records": [activity(tag, 1)]}
    assert settings.kafka_bootstrap_servers is not None

    async with refusing_ledger(pg, poison_id):
        # Same key: the same partition, the good chunk right behind the poison one.
        poison_at, good_at = produce(
            settings.kafka_bootstrap_servers,
            INGEST,
            [(key, orjson.dumps(poison)), (key, orjson.dumps(good))],
        )
        assert poison_at.partition == good_at.partition
        good_body = await completed_batch(http, good_id)
        letter = await _dead_letter_of(settings, key)

    assert (good_body["status"], good_body["inserted_count"]) == ("completed", 1)
    assert letter.value == orjson.dumps(poison)
    assert _text(letter, "batchline.error.class") == "RaiseError"
    assert "refused by the test" in _text(letter, "batchline.error.message")
    _assert_where_and_when(letter, poison_at, "process", settings.max_processing_attempts)
    # The batch still finishes: its records are failed, and say why.
    poison_body = await completed_batch(http, poison_id)
    assert (poison_body["status"], poison_body["failed_count"]) == ("completed", 1)
    assert poison_body["results"][0]["error"] == "processing_failed"
    assert poison_body["results"][0]["details"]["dead_letter"] == "RaiseError"
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM activity WHERE coordinator_id = $1 AND mentor_id = 'mentor-0'",
            f"coord-{tag}",
        )
        == 0
    )


async def test_an_outcome_that_cannot_be_projected_is_dead_lettered_and_the_rest_projected(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    poison_id, good_id = f"outcome-poison-{tag}", f"outcome-good-{tag}"
    for batch_id in (poison_id, good_id):
        await pg.execute(
            "INSERT INTO batch (id, entity, source, record_count, pending_count)"
            " VALUES ($1, 'activity', 'kafka', 1, 1)",
            batch_id,
        )

    def outcome(batch_id: str) -> bytes:
        return encode_outcome(
            batch_id,
            "activity",
            0,
            1,
            [(0, RecordStatus.FAILED, None, RecordError.VALIDATION_ERROR, None)],
        )

    key = f"outcomes-{tag}".encode()
    assert settings.kafka_bootstrap_servers is not None
    async with refusing_projection(pg, poison_id):
        # One window, one outcome in it that fails however often it is tried.
        [poison_at, _] = produce(
            settings.kafka_bootstrap_servers,
            "batchline.outcomes",
            [(key, outcome(poison_id)), (key, outcome(good_id))],
        )
        good = await completed_batch(http, good_id)
        letter = await _dead_letter_of(settings, key)

    assert (good["status"], good["failed_count"]) == ("completed", 1)
    assert letter.value == outcome(poison_id)
    assert _text(letter, "batchline.source.topic") == "batchline.outcomes"
    assert int(_text(letter, "batchline.source.offset")) == poison_at.offset
    assert _text(letter, "batchline.stage") == "process"
    assert _text(letter, "batchline.error.class") == "RaiseError"


@pytest.mark.parametrize(
    ("index", "attempt", "message_part"),
    [
        pytest.param(99, 0, "outcome for record 99 of batch", id="past-the-end"),
        pytest.param(0, 3, "outcome of attempt 3 of batch", id="future-attempt"),
    ],
)
async def test_an_outcome_past_its_batch_is_dead_lettered_not_counted(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    tag: str,
    index: int,
    attempt: int,
    message_part: str,
) -> None:
    batch_id = f"past-end-{tag}"
    chunk = {"entity": "activity", "batch_id": batch_id, "records": [activity(tag, 0)]}
    bootstrap = settings.kafka_bootstrap_servers or ""
    produce(bootstrap, INGEST, [(batch_id.encode(), orjson.dumps(chunk))])
    before = await completed_batch(http, batch_id)
    forged = encode_outcome(
        batch_id, "activity", attempt, 1, [(index, RecordStatus.INSERTED, "pa-forged", None, None)]
    )

    [at] = produce(bootstrap, "batchline.outcomes", [(batch_id.encode(), forged)])

    letter = await _dead_letter_of(settings, batch_id.encode())
    assert letter.value == forged
    assert int(_text(letter, "batchline.source.offset")) == at.offset
    assert message_part in _text(letter, "batchline.error.message")
    assert await completed_batch(http, batch_id) == before


async def test_records_of_a_dead_lettered_chunk_can_be_retried_once_the_cause_is_gone(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    batch_id = f"refused-{tag}"
    chunk = {"entity": "activity", "batch_id": batch_id,
             "records": [activity(tag, 0), activity(tag, 1)]}  # fmt: skip
    assert settings.kafka_bootstrap_servers is not None

    async with refusing_ledger(pg, batch_id, keep_dead_lettered=True):
        produce(
            settings.kafka_bootstrap_servers, INGEST, [(batch_id.encode(), orjson.dumps(chunk))]
        )
        failed = await completed_batch(http, batch_id)
    assert {r["error"] for r in failed["results"]} == {"processing_failed"}

    async with http.put(
        f"/api/v1/batch-inserts/{batch_id}", json={"retry_indices": [0, 1]}
    ) as response:
        assert response.status == 200
        body = await response.json()

    assert (body["inserted_count"], body["failed_count"]) == (2, 0)
    assert await stored_activities(pg, tag) == 2


async def test_a_chunk_reusing_a_batch_id_and_index_for_other_records_is_dead_lettered(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    batch_id = f"reused-{tag}"
    first = {"entity": "activity", "batch_id": batch_id, "records": [activity(tag, 0)]}
    other = {"entity": "activity", "batch_id": batch_id, "records": [activity(tag, 1)]}
    key = batch_id.encode()
    assert settings.kafka_bootstrap_servers is not None
    produce(settings.kafka_bootstrap_servers, INGEST, [(key, orjson.dumps(first))])
    before = await completed_batch(http, batch_id)

    [source] = produce(settings.kafka_bootstrap_servers, INGEST, [(key, orjson.dumps(other))])

    letter = await _dead_letter_of(settings, key)
    assert letter.value == orjson.dumps(other)
    assert _text(letter, "batchline.error.class") == "BatchIndexReused"
    _assert_where_and_when(letter, source, "validate", attempts=1)
    assert await completed_batch(http, batch_id) == before
    assert await stored_activities(pg, tag) == 1


@pytest.mark.parametrize(
    ("entity", "change", "message_part"),
    [
        pytest.param("activity", {"record_count": 4}, "record_count 3", id="another-count"),
        pytest.param("activity", {"entity": "category"}, "entity 'activity'", id="another-entity"),
        pytest.param("category", {"operation": "delete"}, "operation 'insert'", id="another-op"),
        pytest.param("activity", {"attempt": 1}, "attempt 0", id="an-attempt-not-started"),
    ],
)
async def test_a_chunk_that_disagrees_with_its_batch_header_is_dead_lettered(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    tag: str,
    entity: str,
    change: dict[str, object],
    message_part: str,
) -> None:
    batch_id = f"disagrees-{tag}"
    key = batch_id.encode()
    first = {
        "entity": entity,
        "batch_id": batch_id,
        "record_count": 3,
        "records": [activity(tag, 0), activity(tag, 1)],
    }
    later = first | {"first_index": 2, "records": [activity(tag, 2)]} | change
    assert settings.kafka_bootstrap_servers is not None
    produce(settings.kafka_bootstrap_servers, INGEST, [(key, orjson.dumps(first))])
    before = await _with_results(http, batch_id, 2)

    [source] = produce(settings.kafka_bootstrap_servers, INGEST, [(key, orjson.dumps(later))])

    letter = await _dead_letter_of(settings, key)
    assert _text(letter, "batchline.error.class") == "BatchMismatch"
    assert message_part in _text(letter, "batchline.error.message")
    _assert_where_and_when(letter, source, "validate", attempts=1)
    assert await _with_results(http, batch_id, 2) == before


async def _with_results(http: aiohttp.ClientSession, batch_id: str, count: int) -> object:
    """The batch once ``count`` of its records have a result (it may still be processing)."""
    for _ in range(300):
        async with http.get(f"/api/v1/batch-inserts/{batch_id}") as response:
            if response.status == 200:
                body = await response.json()
                if len(body["results"]) >= count:
                    return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{batch_id} never had {count} results")


async def test_a_dead_letter_too_large_for_the_dead_letter_topic_goes_without_its_value(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    # Larger than batchline's producer sends: retrying it would stop the partition forever.
    key = f"huge-{tag}".encode()
    value = b'{"entity": "activity", "records": [' + b"1," * (9 * 1024 * 1024) + b"x]}"
    assert settings.kafka_bootstrap_servers is not None

    [source] = produce(
        settings.kafka_bootstrap_servers, INGEST, [(key, value)], max_message_bytes=64 << 20
    )

    letter = await _dead_letter_of(settings, key)
    assert letter.value is None
    assert _text(letter, "batchline.value.omitted") == (
        f"{len(value)} bytes, too large for {DLQ};"
        f" the original is at {INGEST}:{source.partition}:{source.offset}"
    )
    _assert_where_and_when(letter, source, "decode", attempts=1)
    await _a_chunk_behind_it_is_written(settings, http, key, tag)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("batchline.replay.count", b"9" * 5000)], id="replay-count-of-5000-digits"),
        pytest.param([("batchline.origin", b"a\x00b:1:2")], id="origin-with-nul"),
        pytest.param([("batchline.origin", b"../../etc:1:2")], id="origin-with-slashes"),
        pytest.param([("batchline.origin", b"x" * 10_000 + b":1:2")], id="origin-10-kb"),
    ],
)
async def test_batchline_headers_made_up_by_a_producer_do_not_stop_the_worker(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    tag: str,
    headers: list[tuple[str, bytes]],
) -> None:
    key = f"headers-{tag}".encode()
    envelope = {"entity": "activity", "records": [activity(tag, 0)]}
    assert settings.kafka_bootstrap_servers is not None

    [source] = produce(
        settings.kafka_bootstrap_servers, INGEST, [(key, orjson.dumps(envelope))], headers=headers
    )

    # A made-up origin is ignored: the batch id comes from where the chunk really is.
    body = await completed_batch(http, f"kafka-{INGEST}-{source.partition}-{source.offset}")
    assert (body["status"], body["inserted_count"]) == ("completed", 1)
    await _a_chunk_behind_it_is_written(settings, http, key, tag)


async def _a_chunk_behind_it_is_written(
    settings: Settings, http: aiohttp.ClientSession, key: bytes, tag: str
) -> None:
    """The same key, so the same partition and lane: it is not stuck behind what came first."""
    assert settings.kafka_bootstrap_servers is not None
    envelope = {"entity": "activity", "batch_id": f"behind-{tag}", "records": [activity(tag, 1)]}
    produce(settings.kafka_bootstrap_servers, INGEST, [(key, orjson.dumps(envelope))])
    body = await completed_batch(http, f"behind-{tag}")
    assert (body["status"], body["inserted_count"]) == ("completed", 1)
