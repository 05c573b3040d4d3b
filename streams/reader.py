"""Read a whole topic, from given offsets to its current end, without a consumer group.

For operators' tools (the dead-letter topic): partitions are assigned, not subscribed, no
offsets are committed, and reading stops when every partition has reported its end
(librdkafka's partition EOF, which follows the high watermark of the fetch responses).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from streams.consumer import consumed
from streams.messages import ConsumedMessage

_BATCH = 500
_POLL_SECONDS = 0.1


class TopicUnreadable(RuntimeError):
    """The broker did not let us read the topic."""


async def read_topic(
    consumer_config: Mapping[str, Any],
    topic: str,
    start_offsets: Mapping[int, int] | None = None,
    *,
    metadata_timeout: float = 10.0,
    idle_timeout: float = 30.0,
) -> AsyncGenerator[ConsumedMessage, None]:
    """Every message of ``topic`` (of the partitions in ``start_offsets``, from about there,
    when given: see ``_reachable_start``) up to the end as it is when each partition is
    reached.

    Raises TopicUnreadable when nothing arrives for ``idle_timeout`` seconds (broker away).
    Close the iterator (``contextlib.aclosing``) when leaving it early.
    """
    config = {
        **consumer_config,
        "enable.partition.eof": True,
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    }
    consumer = Consumer(config)
    try:
        metadata = await asyncio.to_thread(consumer.list_topics, topic, metadata_timeout)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            if described is not None and described.error.code() in (
                KafkaError.UNKNOWN_TOPIC_OR_PART,
                KafkaError._UNKNOWN_TOPIC,
            ):
                return
            raise TopicUnreadable(f"cannot describe {topic}: {described and described.error}")
        partitions = sorted(described.partitions)
        if start_offsets is not None:
            partitions = [p for p in partitions if p in start_offsets]
        if not partitions:
            return
        starts = {
            p: await asyncio.to_thread(
                _reachable_start, consumer, topic, p, wanted, metadata_timeout
            )
            for p, wanted in (start_offsets or {}).items()
            if p in partitions
        }
        consumer.assign(
            [TopicPartition(topic, p, starts.get(p, OFFSET_BEGINNING)) for p in partitions]
        )
        remaining = set(partitions)
        loop = asyncio.get_running_loop()
        heard_at = loop.time()
        while remaining:
            batch = await asyncio.to_thread(consumer.consume, _BATCH, _POLL_SECONDS)
            if any(message.error() is None or _is_eof(message) for message in batch):
                heard_at = loop.time()
            elif loop.time() - heard_at > idle_timeout:
                raise TopicUnreadable(f"no answer reading {topic} for {idle_timeout:.0f} s")
            for message in batch:
                error = message.error()
                if error is None:
                    if message.partition() in remaining:
                        yield consumed(message)
                elif _is_eof(message):
                    remaining.discard(message.partition())
                elif error.fatal() or not error.retriable():
                    raise TopicUnreadable(f"reading {topic}: {error}")
    except KafkaException as exc:
        raise TopicUnreadable(f"reading {topic}: {exc}") from exc
    finally:
        await asyncio.to_thread(consumer.close)


def _reachable_start(
    consumer: Consumer, topic: str, partition: int, wanted: int, timeout: float
) -> int:
    """``wanted``, or an earlier offset that exists when ``wanted`` may lie beyond the end.

    A fetch beyond the end waits forever for data instead of reporting the end, and some
    brokers (Tansu) report a high watermark below the true end, so a start past the
    reported watermark begins at its last message instead; the caller skips what precedes
    the offset it wanted.
    """
    low, high = consumer.get_watermark_offsets(
        TopicPartition(topic, partition), timeout=timeout, cached=False
    )
    if wanted < high:
        return max(wanted, low)
    return max(low, high - 1)


def _is_eof(message: Any) -> bool:
    error = message.error()
    return error is not None and error.code() == KafkaError._PARTITION_EOF
