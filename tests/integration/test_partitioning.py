"""Keys go to the partition a Java client would choose (murmur2), as kafka-python shows.

Producers that share a topic with batchline (a FOLIO module writing instance events, a
Kafka-native producer writing chunks) must agree on the partition of a key, or per-key
ordering breaks across them.
"""

from __future__ import annotations

import asyncio

import aiohttp
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from batchline.settings import Settings
from consumers.app import WorkerResources
from streams.admin import ensure_topics
from streams.producer import AsyncProducer, OutgoingMessage
from streams.topics import ACTIVITY_EVENTS
from tests.integration.activities import BASE, activity
from tests.integration.kafka import read_all, wait_for_records

PARTITIONS = 6


def java_partition(key: bytes, partitions: int) -> int:
    """The Java client's choice for a keyed message, as kafka-python computes it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _kafka_python_partitions(bootstrap: str, topic: str, keys: list[bytes]) -> dict[bytes, int]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        sent = {key: producer.send(topic, key=key, value=b"x") for key in keys}
        return {key: future.get(timeout=30).partition for key, future in sent.items()}
    finally:
        producer.close(timeout=10)


async def test_batchline_puts_a_key_where_kafka_python_puts_it(
    settings: Settings, tag: str
) -> None:
    bootstrap = settings.require_bootstrap_servers()
    ours, theirs = f"partitions-ours-{tag}", f"partitions-theirs-{tag}"
    await ensure_topics(
        settings.librdkafka_admin_config(), {ours: PARTITIONS, theirs: PARTITIONS}, 1
    )
    keys = [f"instance-{tag}-{n}".encode() for n in range(200)]

    producer = AsyncProducer(settings.librdkafka_producer_config())
    try:
        await producer.send_many(OutgoingMessage(ours, b"x", key) for key in keys)
    finally:
        await producer.close()
    by_kafka_python = await asyncio.to_thread(_kafka_python_partitions, bootstrap, theirs, keys)

    by_batchline = {record.key: record.partition for record in read_all(bootstrap, ours)}
    assert by_batchline == by_kafka_python
    assert len(set(by_batchline.values())) == PARTITIONS


async def test_domain_events_are_on_the_partition_of_their_key(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    records = [activity(tag, n) for n in range(40)]
    async with http.post(
        BASE, params={"publish_events": "true"}, json={"activities": records}
    ) as response:
        assert response.status == 201
        ids = {r["activity_id"].encode() for r in (await response.json())["results"]}

    events = await wait_for_records(
        settings.require_bootstrap_servers(), ACTIVITY_EVENTS, lambda r: r.key in ids, count=40
    )

    partitions = settings.ingest_partitions
    assert {e.key: e.partition for e in events} == {
        e.key: java_partition(e.key, partitions) for e in events if e.key is not None
    }
