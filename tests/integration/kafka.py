"""Plain confluent-kafka clients, as any producer or consumer outside batchline would use.

Nothing here imports batchline: what these read and write is the published contract.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BATCH_INSERTS = "/api/v1/batch-inserts"


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp_ms: int


def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes | None]],
    headers: Sequence[tuple[str, bytes | None]] = (),
    partition: int | None = None,
    compression: str = "none",
    max_message_bytes: int = 1_000_000,
) -> list[Delivered]:
    """Produce ``(key, value)`` pairs in order and wait for every acknowledgement."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "compression.type": compression,
            "message.max.bytes": max_message_bytes,
        }
    )
    delivered: list[Delivered] = []
    errors: list[Any] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(Delivered(msg.topic(), msg.partition(), msg.offset()))

    for key, value in messages:
        extra = {"partition": partition} if partition is not None else {}
        producer.produce(
            topic, value, key, headers=list(headers) or None, on_delivery=on_delivery, **extra
        )
    assert producer.flush(15) == 0
    producer.close()
    assert not errors, errors
    return delivered


def filters_aborted_transactions(bootstrap: str) -> bool:
    """Whether the broker hides an aborted transaction's messages from read_committed readers.

    Kafka does; Tansu 0.6 (the embedded broker) hands them out like committed ones.
    """
    topic = f"aborted-probe-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the topic exists
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(15)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic})
    producer.init_transactions(15)
    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.flush(15)
    producer.abort_transaction(15)
    producer.begin_transaction()
    producer.produce(topic, b"committed")
    producer.commit_transaction(15)
    producer.close()
    return [r.value for r in read_all(bootstrap, topic)] == [b"committed"]


def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every message on ``topic`` right now, read without a consumer group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = set(partitions)
        found: list[Record] = []
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(message.partition())
                    continue
                found.append(
                    Record(
                        message.partition(),
                        message.offset(),
                        message.key(),
                        message.value(),
                        dict(message.headers() or ()),
                        message.timestamp()[1],
                    )
                )
        assert not remaining, f"could not read {topic} to its end"
        return found
    finally:
        consumer.close()


async def wait_for_records(
    bootstrap: str, topic: str, wanted: Callable[[Record], bool], count: int = 1
) -> list[Record]:
    """Read ``topic`` again until at least ``count`` records match."""
    for _ in range(200):
        found = [r for r in await asyncio.to_thread(read_all, bootstrap, topic) if wanted(r)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} matching records on {topic}")


async def completed_batch(http: aiohttp.ClientSession, batch_id: str) -> dict[str, Any]:
    """GET the batch until it is no longer processing."""
    for _ in range(600):
        async with http.get(f"{BATCH_INSERTS}/{batch_id}") as response:
            if response.status == 200:
                body: dict[str, Any] = await response.json()
                if body["status"] != "processing":
                    return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not finish")
