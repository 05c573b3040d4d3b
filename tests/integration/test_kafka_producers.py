"""Chunk envelopes written to batchline.ingest by a plain Kafka producer are processed like
REST batches and answered through GET /api/v1/batch-inserts/{id}."""

from __future__ import annotations

import json

import aiohttp
import asyncpg
import orjson
import pytest
from confluent_kafka import Producer

from batchline.settings import Settings
from consumers.app import WorkerResources
from tests.integration.activities import activity, stored_activities
from tests.integration.kafka import completed_batch, filters_aborted_transactions, produce

INGEST = "batchline.ingest"


async def test_a_batch_produced_in_chunks_with_its_own_id_is_answered_like_a_rest_batch(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    batch_id = f"producer-{tag}"
    records = [activity(tag, n) for n in range(5)]
    records[3] = activity(tag, 3, duration_minutes=0)
    chunks = [
        {
            "operation": "insert",
            "entity": "activity",
            "batch_id": batch_id,
            "record_count": 5,
            "first_index": start,
            "records": records[start : start + 3],
        }
        for start in (0, 3)
    ]
    assert settings.kafka_bootstrap_servers is not None

    produce(
        settings.kafka_bootstrap_servers,
        INGEST,
        [(batch_id.encode(), orjson.dumps(chunk)) for chunk in chunks],
    )

    body = await completed_batch(http, batch_id)
    assert body["status"] == "completed"
    assert (body["record_count"], body["inserted_count"], body["failed_count"]) == (5, 4, 1)
    assert [r["status"] for r in body["results"]] == ["success"] * 3 + ["failed", "success"]
    assert body["results"][3]["error"] == "validation_error"
    assert body["results"][3]["details"][0]["field"] == "duration_minutes"
    ids = [r["activity_id"] for r in body["results"] if r["status"] == "success"]
    stored = await pg.fetch("SELECT id FROM activity WHERE coordinator_id = $1", f"coord-{tag}")
    assert sorted(ids) == sorted(row["id"] for row in stored)
    async with http.get("/api/v1/batch-inserts", params={"limit": 100}) as response:
        listed = {b["id"] for b in (await response.json())["data"]}
    assert batch_id in listed


async def test_a_chunk_without_a_batch_id_gets_one_from_its_topic_partition_and_offset(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    envelope = {"entity": "activity", "records": [activity(tag, 0), activity(tag, 1)]}
    assert settings.kafka_bootstrap_servers is not None

    [where] = produce(settings.kafka_bootstrap_servers, INGEST, [(None, orjson.dumps(envelope))])

    batch_id = f"kafka-{INGEST}-{where.partition}-{where.offset}"
    body = await completed_batch(http, batch_id)
    assert (body["id"], body["status"], body["inserted_count"]) == (batch_id, "completed", 2)
    assert [r["index"] for r in body["results"]] == [0, 1]


async def test_chunks_compressed_with_any_kafka_codec_are_read(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    # Producers often compress; the worker's consumer must read every codec Kafka has, and
    # a plain chunk behind them shows its fetcher is still running.
    codecs = ["gzip", "lz4", "snappy", "zstd", "none"]
    assert settings.kafka_bootstrap_servers is not None

    for number, codec in enumerate(codecs):
        envelope = {
            "entity": "activity",
            "batch_id": f"{codec}-{tag}",
            "records": [activity(tag, number)],
        }
        produce(
            settings.kafka_bootstrap_servers,
            INGEST,
            [(envelope["batch_id"].encode(), orjson.dumps(envelope))],
            compression=codec,
        )

    for codec in codecs:
        body = await completed_batch(http, f"{codec}-{tag}")
        assert (body["status"], body["inserted_count"]) == ("completed", 1), codec


async def test_chunks_of_an_aborted_transaction_are_never_written(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    # A transactional producer's aborted chunks must stay unread; the committed chunk
    # behind them (same partition, by key) shows the consumer has moved past them.
    assert settings.kafka_bootstrap_servers is not None
    if not filters_aborted_transactions(settings.kafka_bootstrap_servers):
        pytest.skip("this broker hands aborted transactions to read_committed readers")
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "transactional.id": f"tx-{tag}"}
    )
    producer.init_transactions(15)

    def chunk(batch_id: str, number: int) -> bytes:
        return orjson.dumps(
            {"entity": "activity", "batch_id": batch_id, "records": [activity(tag, number)]}
        )

    producer.begin_transaction()
    producer.produce(INGEST, chunk(f"aborted-{tag}", 0), key=tag.encode())
    producer.flush(15)
    producer.abort_transaction(15)
    producer.begin_transaction()
    producer.produce(INGEST, chunk(f"committed-{tag}", 1), key=tag.encode())
    producer.commit_transaction(15)
    producer.close()

    body = await completed_batch(http, f"committed-{tag}")
    assert (body["status"], body["inserted_count"]) == ("completed", 1)
    async with http.get(f"/api/v1/batch-inserts/aborted-{tag}") as response:
        assert response.status == 404
    stored = await stored_activities(pg, tag)
    assert stored == 1


async def test_a_record_with_an_integer_beyond_64_bits_fails_alone(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    # Its payload is kept for a retry, and the JSON encoder of the kept payloads once failed
    # on it, taking the chunk's valid records down too.
    records = [activity(tag, 0), activity(tag, 1, duration_minutes=10**30), activity(tag, 2)]
    envelope = {"entity": "activity", "batch_id": f"bigint-{tag}", "records": records}
    assert settings.kafka_bootstrap_servers is not None

    produce(
        settings.kafka_bootstrap_servers,
        INGEST,
        [(envelope["batch_id"].encode(), json.dumps(envelope).encode())],
    )

    body = await completed_batch(http, f"bigint-{tag}")
    assert (body["inserted_count"], body["failed_count"]) == (2, 1)
    assert body["results"][1]["error"] == "validation_error"
    assert body["results"][1]["details"][0]["field"] == "duration_minutes"
