"""FOLIO domain events of the bulk front door, read back from the topic with a real consumer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import aiohttp
import asyncpg
import orjson
from confluent_kafka import Consumer, Message, TopicPartition

from batchline.settings import Settings
from tests.integration.instances import instance, new_id, post_bulk, write_file

CREATE_FIELDS = {"eventId", "eventTs", "type", "new", "tenant"}
UPDATE_FIELDS = CREATE_FIELDS | {"old"}


def _consume(
    settings: Settings, topic: str, done: Callable[[list[Message]], bool], within: float = 60
) -> list[Message]:
    """Messages of ``topic`` from its start until ``done`` says so (or ``within`` seconds)."""
    consumer = Consumer(settings.librdkafka_consumer_config(f"test-{uuid.uuid4().hex}"))
    try:
        consumer.subscribe([topic])
        messages: list[Message] = []
        deadline = time.monotonic() + within
        while not done(messages) and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        return messages
    finally:
        consumer.close()


def _message_count(settings: Settings, topic: str) -> int:
    """Messages on ``topic`` up to its high watermarks; 0 when the topic does not exist."""
    consumer = Consumer(settings.librdkafka_consumer_config(f"test-{uuid.uuid4().hex}"))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        total = 0
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


async def test_events_carry_folios_shape_key_header_and_tenant(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    tenant = f"tenant_{tag}"
    first, second = new_id(), new_id()
    write_file(settings, f"{tag}/v1", [instance(tag, 0, id=first), instance(tag, 1, id=second)])
    await post_bulk(http, {"recordsFileName": f"{tag}/v1"}, tenant=tenant)
    created = await pg.fetchval("SELECT jsonb FROM instance WHERE id = $1::uuid", first)
    write_file(settings, f"{tag}/v2", [instance(tag, 0, id=first, title="Renamed", _version=1)])
    status, body, _ = await post_bulk(
        http, {"recordsFileName": f"{tag}/v2", "publishEvents": True}, tenant=tenant
    )
    assert (status, body["errorsNumber"]) == (201, 0)
    updated = await pg.fetchval("SELECT jsonb FROM instance WHERE id = $1::uuid", first)

    topic = f"folio.{tenant}.inventory.instance"
    messages = await asyncio.to_thread(_consume, settings, topic, lambda found: len(found) >= 3)

    assert len(messages) == 3
    events = {
        (m.key().decode(), orjson.loads(m.value())["type"]): (m, orjson.loads(m.value()))
        for m in messages
    }
    assert set(events) == {(first, "CREATE"), (second, "CREATE"), (first, "UPDATE")}
    for message, value in events.values():
        assert message.topic() == topic
        assert ("folio.tenantId", tenant.encode()) in (message.headers() or [])
        assert value["tenant"] == tenant
        assert str(uuid.UUID(value["eventId"])) == value["eventId"]
        assert isinstance(value["eventTs"], int)
    _, create = events[(first, "CREATE")]
    _, update = events[(first, "UPDATE")]
    assert set(create) == CREATE_FIELDS
    assert create["new"] == created
    assert set(update) == UPDATE_FIELDS
    assert update["old"] == created
    assert update["new"] == updated
    assert update["new"]["_version"] == 2
    assert len({value["eventId"] for _, value in events.values()}) == 3


async def test_without_a_tenant_header_events_go_to_the_default_tenant(
    http: aiohttp.ClientSession, settings: Settings, tag: str
) -> None:
    instance_id = new_id()
    write_file(settings, f"{tag}/default", [instance(tag, 0, id=instance_id)])

    await post_bulk(http, {"recordsFileName": f"{tag}/default"})

    topic = f"folio.{settings.default_tenant}.inventory.instance"

    def mine(found: list[Message]) -> list[Message]:
        return [m for m in found if m.key() == instance_id.encode()]

    messages = mine(
        await asyncio.to_thread(_consume, settings, topic, lambda found: bool(mine(found)))
    )
    assert len(messages) == 1
    assert orjson.loads(messages[0].value())["tenant"] == settings.default_tenant


async def test_publish_events_false_stages_and_sends_nothing(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    tenant = f"quiet_{tag}"
    write_file(settings, f"{tag}/quiet", [instance(tag, 0), instance(tag, 1)])

    status, body, response = await post_bulk(
        http, {"recordsFileName": f"{tag}/quiet", "publishEvents": False}, tenant=tenant
    )

    assert (status, body["errorsNumber"]) == (201, 0)
    batch_id = response.headers["Location"].rsplit("/", 1)[1]
    # Events are staged in the writing transaction, which committed before the batch
    # completed: anything meant to be sent is in the outbox or already on the topic.
    assert await pg.fetchval("SELECT count(*) FROM event_outbox WHERE batch_id = $1", batch_id) == 0
    topic = f"folio.{tenant}.inventory.instance"
    assert await asyncio.to_thread(_message_count, settings, topic) == 0
