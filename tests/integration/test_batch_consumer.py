"""The batch consumer the projector reads outcomes with: commit after, rewind on failure."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, TopicPartition

from batchline.settings import Settings
from streams.admin import ensure_topics
from streams.consumer import BatchConsumer, BatchHandler
from streams.messages import ConsumedMessage
from tests.integration.kafka import produce


async def _committed(settings: Settings, group: str, topic: str) -> int:
    consumer = Consumer(settings.librdkafka_consumer_config(group))
    try:
        [position] = await asyncio.to_thread(consumer.committed, [TopicPartition(topic, 0)], 10)
        return int(position.offset)
    finally:
        await asyncio.to_thread(consumer.close)


async def topic_holding(settings: Settings, values: Sequence[bytes]) -> str:
    """A new one-partition topic with ``values`` on it, in order."""
    topic = f"batch-consumer-{uuid.uuid4().hex[:8]}"
    bootstrap = settings.require_bootstrap_servers()
    await ensure_topics(settings.librdkafka_admin_config(), {topic: 1})
    await asyncio.to_thread(produce, bootstrap, topic, [(b"k", v) for v in values])
    return topic


def batch_consumer(
    settings: Settings, group: str, topic: str, handler: BatchHandler
) -> BatchConsumer:
    return BatchConsumer(
        settings.librdkafka_consumer_config(group),
        [topic],
        handler,
        max_batch=8,
        retry_seconds=0.05,
        name="test-batch-consumer",
    )


async def test_a_failed_batch_is_read_again_and_offsets_are_committed_only_after_success(
    settings: Settings,
) -> None:
    values = [f"m{n}".encode() for n in range(20)]
    topic = await topic_holding(settings, values)
    group = f"batch-consumer-{uuid.uuid4().hex[:8]}"

    calls: list[list[bytes]] = []
    handled: list[bytes] = []
    all_handled = asyncio.Event()

    async def handler(batch: Sequence[ConsumedMessage]) -> None:
        calls.append([m.value or b"" for m in batch])
        if len(calls) == 1:
            raise RuntimeError("database away")
        handled.extend(m.value or b"" for m in batch)
        if len(handled) >= len(values):
            all_handled.set()

    consumer = batch_consumer(settings, group, topic, handler)
    await consumer.start()
    try:
        await asyncio.wait_for(all_handled.wait(), 30)
    finally:
        await consumer.stop()

    assert handled == values  # in order, each once after the failure
    assert calls[1][: len(calls[0])] == calls[0]  # the failed batch came back first
    assert all(len(batch) <= 8 for batch in calls)
    assert await _committed(settings, group, topic) == len(values)


async def test_stop_cancels_a_handler_that_does_not_finish_and_commits_nothing_of_it(
    settings: Settings,
) -> None:
    topic = await topic_holding(settings, [b"first", b"second"])
    group = f"batch-consumer-{uuid.uuid4().hex[:8]}"

    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handler(_batch: Sequence[ConsumedMessage]) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a database that never comes back
        except asyncio.CancelledError:
            cancelled.set()
            raise

    consumer = batch_consumer(settings, group, topic, handler)
    await consumer.start()
    await asyncio.wait_for(started.wait(), 30)
    await asyncio.wait_for(consumer.stop(grace_seconds=0.5), 15)

    assert cancelled.is_set()
    assert await _committed(settings, group, topic) < 0  # nothing committed: read again later
