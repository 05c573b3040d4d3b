"""Idempotency keys, duplicate deliveries, the 202 path, stale batches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from batchline.cli.embedded import free_port
from batchline.cli.runtime import serving_api
from batchline.loader.loading import LoadOptions, load
from batchline.loader.reading import FileFormat, idempotency_key_base
from batchline.settings import Settings
from batchline.vocabulary import RecordError, RecordStatus, ResultFilter, Source
from consumers.app import WorkerResources
from sql import batches, idempotency_keys, ledger, results
from sql.stale_batches import settle_stale_batches
from streams import topics
from streams.envelopes import ChunkOptions
from streams.events import ChunkOutcome, encode_outcome
from tests.integration.activities import BASE, JSON, activity, post_batch, stored_activities


async def test_same_idempotency_key_and_body_answers_the_stored_response_once(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    headers = {"Idempotency-Key": f"key-{tag}"}
    records = [activity(tag, 0), activity(tag, 1)]

    first = await post_batch(http, records, headers=headers)
    second = await post_batch(http, records, headers=headers)

    assert first == second
    assert first[0] == 201
    assert await stored_activities(pg, tag) == 2
    assert (
        await pg.fetchval("SELECT count(*) FROM chunk_result WHERE batch_id = $1", first[1]["id"])
        == 1
    )


async def test_a_replayed_answer_says_so_in_a_header(http: aiohttp.ClientSession, tag: str) -> None:
    headers = {"Idempotency-Key": f"key-{tag}"}
    payload = {"activities": [activity(tag, 0)]}

    async with http.post(BASE, json=payload, headers=headers) as first:
        assert first.status == 201
        assert "Idempotent-Replayed" not in first.headers
    async with http.post(BASE, json=payload, headers=headers) as second:
        assert second.status == 201
        assert second.headers["Idempotent-Replayed"] == "true"


async def test_same_idempotency_key_with_another_body_is_422(
    http: aiohttp.ClientSession, tag: str
) -> None:
    headers = {"Idempotency-Key": f"key-{tag}"}
    await post_batch(http, [activity(tag, 0)], headers=headers)

    status, body = await post_batch(http, [activity(tag, 1)], headers=headers)

    assert status == 422
    assert body["error"]["code"] == "idempotency_key_reused"


async def test_idempotency_key_still_in_flight_is_409(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    payload = orjson.dumps({"activities": [activity(tag, 0)]})
    await pg.execute(
        "INSERT INTO idempotency_key (key, request_hash) VALUES ($1, $2)",
        f"key-{tag}",
        idempotency_keys.request_fingerprint(payload),
    )

    async with http.post(BASE, data=payload, headers=JSON | {"Idempotency-Key": f"key-{tag}"}) as r:
        assert r.status == 409
        assert (await r.json())["error"]["code"] == "idempotency_key_in_flight"


async def test_a_key_whose_request_died_before_its_batch_is_taken_over(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    payload = orjson.dumps({"activities": [activity(tag, 0)]})
    await pg.execute(
        "INSERT INTO idempotency_key (key, request_hash, created_at)"
        " VALUES ($1, $2, now() - interval '2 minutes')",
        f"key-{tag}",
        idempotency_keys.request_fingerprint(payload),
    )

    async with http.post(BASE, data=payload, headers=JSON | {"Idempotency-Key": f"key-{tag}"}) as r:
        assert r.status == 201
        body = await r.json()
    assert body["inserted_count"] == 1
    stored = await pg.fetchrow(
        "SELECT batch_id, response_status FROM idempotency_key WHERE key = $1", f"key-{tag}"
    )
    assert (stored["batch_id"], stored["response_status"]) == (body["id"], 201)


async def test_a_key_whose_request_died_after_its_batch_answers_with_the_finished_batch(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    payload = orjson.dumps({"activities": [activity(tag, 0)]})
    status, done = await post_batch(http, [activity(tag, 0)])
    assert status == 201
    # As left by an API process killed after writing the header, before answering.
    await pg.execute(
        "INSERT INTO idempotency_key (key, request_hash, batch_id) VALUES ($1, $2, $3)",
        f"key-{tag}",
        idempotency_keys.request_fingerprint(payload),
        done["id"],
    )

    async with http.post(BASE, data=payload, headers=JSON | {"Idempotency-Key": f"key-{tag}"}) as r:
        assert r.status == 201
        assert r.headers["Idempotent-Replayed"] == "true"
        assert await r.json() == done
    count = await stored_activities(pg, tag)
    assert count == 1


async def test_a_blank_or_overlong_idempotency_key_is_400(
    http: aiohttp.ClientSession, tag: str
) -> None:
    for key in ("", "   ", "k" * 256, "".join(chr(65 + n % 58) for n in range(7000))):
        status, body = await post_batch(http, [activity(tag, 0)], headers={"Idempotency-Key": key})
        assert status == 400, key[:20]
        assert body["error"]["code"] == "invalid_request"
        assert body["error"]["details"] == {"header": "Idempotency-Key", "max_length": 255}

    status, _ = await post_batch(http, [activity(tag, 0)], headers={"Idempotency-Key": "k" * 255})
    assert status == 201


async def test_a_chunk_delivered_twice_is_written_once_and_reported_as_success(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    batch_id = f"redelivered-{tag}"
    envelope = orjson.dumps(
        {
            "entity": "activity",
            "batch_id": batch_id,
            "records": [activity(tag, 0), activity(tag, 1)],
        }
    )
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for _ in range(2):
        producer.produce(topics.INGEST, envelope, key=batch_id.encode())
    assert producer.flush(10) == 0
    producer.close()

    body = await _completed(http, batch_id)

    assert (body["inserted_count"], body["failed_count"]) == (2, 0)
    assert [r["status"] for r in body["results"]] == ["success", "success"]
    assert await stored_activities(pg, tag) == 2
    # Both deliveries were processed before we looked: the ledger holds one row per record.
    await asyncio.sleep(1)
    again = await _completed(http, batch_id)
    assert again["results"] == body["results"]


async def _completed(http: aiohttp.ClientSession, batch_id: str) -> dict[str, object]:
    for _ in range(300):
        async with http.get(f"{BASE}/{batch_id}") as response:
            if response.status == 200:
                body: dict[str, object] = await response.json()
                if body["status"] == "completed":
                    return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not complete")


async def test_answer_is_202_with_location_when_the_wait_limit_passes(
    settings: Settings, worker: WorkerResources, tag: str
) -> None:
    impatient = settings.model_copy(update={"sync_wait_seconds": 0, "http_port": free_port()})
    async with serving_api(impatient) as url, aiohttp.ClientSession(base_url=url) as http:
        status, body = await post_batch(http, [activity(tag, 0)])
        assert status == 202
        assert body["status"] == "processing"
        async with http.post(BASE, json={"activities": [activity(tag, 1)]}) as response:
            assert response.headers["Location"] == f"{BASE}/{(await response.json())['id']}"
        done = await _completed(http, body["id"])
        assert done["inserted_count"] == 1


async def test_a_batch_that_stops_moving_is_settled_from_its_ledger_and_fails_the_rest(
    worker: WorkerResources, pg: asyncpg.Connection, http: aiohttp.ClientSession
) -> None:
    # As a worker killed after its commit leaves it, with a broker that lost the chunks.
    batch_id = await pg.fetchval(
        "INSERT INTO batch (entity, source, record_count, pending_count, progressed_at)"
        " VALUES ('activity', 'rest', 3, 3, now() - interval '1 hour') RETURNING id"
    )
    await leave_ledger_row(
        pg,
        batch_id,
        3,
        [
            (0, RecordStatus.INSERTED, "pa-x1", None),
            (1, RecordStatus.FAILED, None, RecordError.UNIQUE_CONSTRAINT_VIOLATION),
        ],
    )

    settled = await settle_stale_batches(worker.pool, 60)

    assert batch_id in settled
    async with http.get(f"{BASE}/{batch_id}") as response:
        body = await response.json()
    assert body["status"] == "failed"
    assert (body["inserted_count"], body["failed_count"]) == (1, 2)
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    assert body["results"][0]["activity_id"] == "pa-x1"
    assert body["results"][2] == {
        "index": 2,
        "activity_id": None,
        "status": "failed",
        "error": "never_delivered",
        "details": {
            "message": "its chunk never reached the inserter (no progress for 60 s);"
            " send the record again"
        },
    }
    assert "1 records never reached the inserter" in body["failure_reason"]
    async with http.put(f"{BASE}/{batch_id}", json={"retry_indices": [2]}) as response:
        assert response.status == 422
        assert (await response.json())["error"]["details"]["without_payload"] == [2]

    # The lost chunk turns up after all (replayed from the dead-letter topic, say).
    late = encode_outcome(
        batch_id, "activity", 0, 3, [(2, RecordStatus.INSERTED, "pa-x3", None, None)]
    )
    async with worker.pool.acquire() as conn, conn.transaction():
        await results.project(conn, [(ChunkOutcome.model_validate_json(late), late)])
    async with http.get(f"{BASE}/{batch_id}") as response:
        body = await response.json()
    assert (body["status"], body["inserted_count"], body["failed_count"]) == ("completed", 2, 1)
    assert body.get("failure_reason") is None
    assert body["results"][2]["activity_id"] == "pa-x3"


async def test_a_stale_batch_with_a_ledger_row_no_outcome_describes_keeps_no_other_waiting(
    worker: WorkerResources, pg: asyncpg.Connection
) -> None:
    ids = [
        await pg.fetchval(
            "INSERT INTO batch (entity, source, record_count, pending_count, progressed_at)"
            " VALUES ('activity', 'kafka', 1, 1, now() - interval '1 hour') RETURNING id"
        )
        for _ in range(2)
    ]
    # Index -1: no outcome can carry it (envelopes refuse such indices now; older ones did not).
    await leave_ledger_row(pg, ids[0], 1, [(-1, RecordStatus.INSERTED, "pa-odd", None)])
    await leave_ledger_row(pg, ids[1], 1, [(0, RecordStatus.INSERTED, "pa-fine", None)])

    settled = await settle_stale_batches(worker.pool, 60)

    assert set(ids) <= set(settled)
    rows = await pg.fetch("SELECT id, status FROM batch WHERE id = ANY($1)", ids)
    assert {r["id"]: r["status"] for r in rows} == {ids[0]: "failed", ids[1]: "completed"}
    found = [
        (batch_id, r["index"], r["status"], r["error"])
        for batch_id in ids
        for r in (await results.results_page(pg, batch_id, ResultFilter.ALL, 0, 10)).results
    ]
    assert found == [
        (ids[0], 0, "failed", "never_delivered"),
        (ids[1], 0, "inserted", None),
    ]


async def test_a_stale_batch_whose_ledger_is_complete_completes(
    worker: WorkerResources, pg: asyncpg.Connection
) -> None:
    batch_id = await pg.fetchval(
        "INSERT INTO batch (entity, source, record_count, pending_count, progressed_at)"
        " VALUES ('activity', 'rest', 1, 1, now() - interval '1 hour') RETURNING id"
    )
    await leave_ledger_row(pg, batch_id, 1, [(0, RecordStatus.INSERTED, "pa-x2", None)])

    await settle_stale_batches(worker.pool, 60)

    row = await pg.fetchrow(
        "SELECT status, inserted_count, failure_reason FROM batch WHERE id = $1", batch_id
    )
    assert (row["status"], row["inserted_count"], row["failure_reason"]) == ("completed", 1, None)


async def leave_ledger_row(
    pg: asyncpg.Connection,
    batch_id: str,
    record_count: int,
    outcomes: list[tuple[int, RecordStatus, str | None, RecordError | None]],
) -> None:
    """A chunk's ledger row, as a worker killed after its commit leaves it behind."""
    outcome = encode_outcome(batch_id, "activity", 0, record_count, [(*o, None) for o in outcomes])
    async with pg.transaction():
        await ledger.record(pg, batch_id, 0, [o[0] for o in outcomes], [outcome], None, None)


async def test_operations_endpoints(http: aiohttp.ClientSession, tag: str) -> None:
    await post_batch(http, [activity(tag, 0)])
    async with http.get("/health") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    async with http.get("/ready") as response:
        body = await response.json()
        assert response.status == 200
        assert body["checks"] == {"database": "ok", "broker": "ok"}
    async with http.get("/metrics") as response:
        text = await response.text()
        assert 'batchline_records_accepted_total{front_door="batch-inserts"}' in text
        assert "batchline_batch_latency_seconds_bucket" in text
        assert 'batchline_records_written_total{entity="activity",status="inserted"}' in text
    async with http.get("/openapi.json") as response:
        spec = await response.json()
        assert spec["openapi"].startswith("3.")
        assert {"get", "post"} <= set(spec["paths"]["/api/v1/batch-inserts"])
        assert {"get", "put", "delete"} <= set(spec["paths"]["/api/v1/batch-inserts/{batch_id}"])


async def test_the_offset_is_committed_once_a_chunk_is_processed(
    http: aiohttp.ClientSession, settings: Settings, tag: str
) -> None:
    batch_id = f"committed-{tag}"
    delivered: list[tuple[int, int]] = []
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(
        topics.INGEST,
        orjson.dumps({"entity": "activity", "batch_id": batch_id, "records": [activity(tag, 0)]}),
        key=batch_id.encode(),
        on_delivery=lambda _err, msg: delivered.append((msg.partition(), msg.offset())),
    )
    assert producer.flush(10) == 0
    producer.close()
    [(partition, offset)] = delivered
    await _completed(http, batch_id)

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": settings.consumer_group,
            "enable.auto.commit": False,
        }
    )
    try:
        for _ in range(100):
            [committed] = consumer.committed([TopicPartition(topics.INGEST, partition)], 10)
            if committed.offset > offset:
                break
            await asyncio.sleep(0.1)
        assert committed.offset > offset
    finally:
        consumer.close()


async def _strand(
    pg: asyncpg.Connection, key: str, body: bytes, records: int, claimed_seconds_ago: float
) -> str:
    """What an API process killed between the batch header and the produce leaves behind:
    a header with no chunks anywhere, and the key tied to it."""
    header = await batches.create(pg, "activity", Source.REST, records, ChunkOptions())
    await pg.execute(
        "INSERT INTO idempotency_key (key, request_hash, batch_id, created_at)"
        " VALUES ($1, $2, $3, now() - make_interval(secs => $4))",
        key,
        idempotency_keys.request_fingerprint(body),
        header.id,
        claimed_seconds_ago,
    )
    return header.id


async def test_a_key_whose_request_died_before_the_produce_sends_the_records_again(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    payload = orjson.dumps({"activities": [activity(tag, 0), activity(tag, 1)]})
    batch_id = await _strand(pg, f"key-{tag}", payload, 2, claimed_seconds_ago=11)

    async with http.post(BASE, data=payload, headers=JSON | {"Idempotency-Key": f"key-{tag}"}) as r:
        assert r.status == 201
        body = await r.json()
    assert (body["id"], body["status"], body["inserted_count"]) == (batch_id, "completed", 2)
    assert await stored_activities(pg, tag) == 2

    async with http.post(BASE, data=payload, headers=JSON | {"Idempotency-Key": f"key-{tag}"}) as r:
        assert r.status == 201
        assert r.headers["Idempotent-Replayed"] == "true"
        assert await r.json() == body


async def test_a_key_whose_request_may_still_be_producing_is_409_with_retry_after(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    payload = orjson.dumps({"activities": [activity(tag, 0)]})
    await _strand(pg, f"key-{tag}", payload, 1, claimed_seconds_ago=3)

    async with http.post(BASE, data=payload, headers=JSON | {"Idempotency-Key": f"key-{tag}"}) as r:
        assert r.status == 409
        assert (await r.json())["error"]["code"] == "idempotency_key_in_flight"
        assert 1 <= int(r.headers["Retry-After"]) <= 7
    assert await stored_activities(pg, tag) == 0


async def test_batchline_load_outlasts_the_wait_for_a_key_whose_request_died(
    api_url: str, pg: asyncpg.Connection, tag: str, tmp_path: Path
) -> None:
    path = tmp_path / "activities.ndjson"
    lines = [orjson.dumps(activity(tag, n)) for n in range(30)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    # A run before this one was killed right after writing batch 1's header: its key is
    # held for the server's full wait from now.
    key = idempotency_key_base(path, FileFormat.NDJSON, 20, "load-") + "1"
    first_body = b'{"activities":[' + b",".join(lines[:20]) + b"]}"
    await _strand(pg, key, first_body, 20, claimed_seconds_ago=0)

    summary = await load(LoadOptions(path, FileFormat.NDJSON, url=api_url, batch_size=20))

    assert summary.everything_sent
    assert summary.inserted == 30
    assert await stored_activities(pg, tag) == 30
